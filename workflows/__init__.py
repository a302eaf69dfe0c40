"""Deterministic orchestration only: no I/O, no wall clock, no randomness, no threads."""

from __future__ import annotations

from workflows.probe import ProbeSiteWorkflow

ALL_WORKFLOWS: list[type] = [ProbeSiteWorkflow]
