"""Seawall: disaster-recovery orchestration on Temporal durable workflows."""

__version__ = "0.1.0"
