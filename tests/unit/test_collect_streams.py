"""scripts/collect_streams.py: the files each lab run of scripts/test.sh imports instead of the suite."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "collect_streams.py"
_spec = importlib.util.spec_from_file_location("collect_streams", SCRIPT)
assert _spec is not None and _spec.loader is not None
collect_streams = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(collect_streams)
selects = collect_streams.selects


@pytest.mark.parametrize(
    ("expression", "markers", "selected"),
    [
        ("lab", {"lab"}, True),
        ("lab", set(), False),
        ("lab and not lab_side", {"lab", "lab_side"}, False),
        ("lab and not lab_side and not lab_b", {"lab"}, True),
        ("lab_b and not lab_exclusive", {"lab", "lab_b"}, True),
        ("(lab_b or lab_c) and not lab_side", {"lab", "lab_c"}, True),
        ("lab_exclusive", {"lab", "lab_side"}, False),
        # A name no test carries is false, as in `-m`.
        ("not never_used", {"lab"}, True),
    ],
)
def test_an_expression_selects_as_pytest_m_does(expression: str, markers: set[str], selected: bool) -> None:
    assert selects(expression, markers) is selected


def test_each_run_gets_the_files_of_its_tests_in_collection_order(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.pytest.ini_options]\nmarkers = ["a", "b"]\n')
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_one.py").write_text(
        textwrap.dedent(
            """
            import pytest

            @pytest.mark.a
            def test_a(): pass

            def test_plain(): pass
            """
        )
    )
    (tests / "test_two.py").write_text("import pytest\n\n@pytest.mark.b\ndef test_b(): pass\n")
    (tests / "test_three.py").write_text(
        "import pytest\n\npytestmark = pytest.mark.a\n\ndef test_c(): pass\n"
    )
    out = tmp_path / "out"
    run = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            str(out),
            "a=a",
            "b=b and not a",
            "none=a and b",
            "--",
            "tests",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    # pytest collects a directory's files by name: test_one, test_three, test_two.
    assert (out / "a.files").read_text().splitlines() == ["tests/test_one.py", "tests/test_three.py"]
    assert (out / "b.files").read_text().splitlines() == ["tests/test_two.py"]
    assert (out / "none.files").read_text() == ""


def test_a_module_that_fails_to_import_fails_the_collection(tmp_path: Path) -> None:
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_broken.py").write_text("import no_such_module_here\n")
    out = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, str(SCRIPT), str(out), "a=a", "--", "tests"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode != 0
    assert not out.exists(), "no list is written from a collection that failed"


def test_arguments_without_a_stream_are_refused_with_the_usage(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path), "no-equals-sign"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert "NAME=MARKER_EXPRESSION" in run.stderr
