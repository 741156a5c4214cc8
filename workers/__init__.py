"""The Celery app (``celery -A workers worker``): charge and reconcile tasks."""

from workers.app import app

__all__ = ["app"]
