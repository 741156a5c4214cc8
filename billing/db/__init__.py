"""The SQLAlchemy adapter: tables, engine, sessions and migrations."""

from billing.db import api_tables as api_tables  # its tables join Base.metadata
