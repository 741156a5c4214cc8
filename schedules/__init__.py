"""The scheduler entry point and the default plan catalog (``schedules/plans.yaml``)."""
