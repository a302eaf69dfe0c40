"""Collect the suite once and write, per run of `scripts/test.sh`, the test files it selects.

    python scripts/collect_streams.py OUT_DIR NAME=MARKER_EXPRESSION... [-- PYTEST_ARGS...]

Writes ``OUT_DIR/NAME.files``: one path per line, in collection order, of the files holding a test the
expression selects (empty when none does). A run given its files imports only those test modules, not
the ~200 of the suite that pytest imports to evaluate a ``-m`` expression: 7 CPU-s of collection each.
The expressions are those of ``-m`` (marker names, ``and``, ``or``, ``not``, parentheses).
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from types import CodeType

import pytest


class _Markers(dict[str, bool]):
    """A test's marker names as the names of a ``-m`` expression: any other name is false."""

    def __missing__(self, key: str) -> bool:
        return False


@functools.cache
def _compiled(expression: str) -> CodeType:
    return compile(expression, "<marker expression>", "eval")


def selects(expression: str, markers: set[str]) -> bool:
    """Whether ``-m expression`` selects a test with these markers."""
    return bool(eval(_compiled(expression), {"__builtins__": {}}, _Markers.fromkeys(markers, True)))


class _Streams:
    def __init__(self, streams: dict[str, str]) -> None:
        self.streams = streams
        self.files: dict[str, list[str]] = {name: [] for name in streams}

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        root = Path.cwd()
        for item in session.items:
            markers = {mark.name for mark in item.iter_markers()}
            path = str(Path(item.path).relative_to(root))
            for name, expression in self.streams.items():
                if path not in self.files[name] and selects(expression, markers):
                    self.files[name].append(path)


def main(argv: list[str]) -> int:
    if "--" in argv:
        split = argv.index("--")
        ours, pytest_args = argv[:split], argv[split + 1 :]
    else:
        ours, pytest_args = argv, []
    if len(ours) < 2 or any("=" not in s for s in ours[1:]):
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(ours[0])
    streams = dict(s.split("=", 1) for s in ours[1:])
    plugin = _Streams(streams)
    code = pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", *pytest_args], plugins=[plugin])
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        return int(code)
    out.mkdir(parents=True, exist_ok=True)
    for name, files in plugin.files.items():
        (out / f"{name}.files").write_text("".join(f"{f}\n" for f in files))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
