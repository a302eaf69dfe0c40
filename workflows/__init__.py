"""Deterministic orchestration only: no I/O, no wall clock, no randomness, no threads.

The worker's lists of workflows are in ``workflows.catalog``; this package imports nothing, so that a
workflow run's sandbox re-imports only the modules that run needs.
"""
