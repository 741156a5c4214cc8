"""Recurring billing on PortOne V1 billing keys."""

__version__ = "0.1.0"
