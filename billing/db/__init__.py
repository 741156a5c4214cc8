"""The SQLAlchemy adapter: tables, engine, sessions and migrations."""
