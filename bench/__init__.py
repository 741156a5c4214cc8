"""`make bench`: throughput and memory of the product beside Celery's own ceiling."""
