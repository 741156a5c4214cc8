"""The plan catalog the product ships with (plans.yaml)."""
