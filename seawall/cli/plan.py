"""`seawall plan check | schema`: plan and inventory files as code."""

from __future__ import annotations

import typer

app = typer.Typer(help="Validate recovery plans and inventories; emit their JSON Schema.")
