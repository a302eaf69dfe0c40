"""`seawall lab up | down | status`: the local lab of real emulators."""

from __future__ import annotations

import typer

app = typer.Typer(help="Start, stop and inspect the local lab (Temporal, vcsim x2, moto, Azurite).")
