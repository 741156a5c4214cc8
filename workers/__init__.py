"""The Celery app (``celery -A workers worker``): charge, reconcile and notify tasks."""
