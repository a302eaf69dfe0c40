"""The KVM benchmark's arguments and the shape of its JSON (the run itself needs the lab's libvirtd)."""

from __future__ import annotations

import json

import pytest

from benchmarks import kvm


def test_defaults_are_the_issues_case() -> None:
    args = kvm.parse_args(["--json"])
    assert (args.size_mib, args.change_pct, args.json, args.uri, args.workdir) == (
        1024,
        1.0,
        True,
        None,
        None,
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--size-mib", "8"], "--size-mib must be at least 16"),
        (["--change-pct", "0"], "--change-pct must be in (0, 100]"),
        (["--change-pct", "101"], "--change-pct must be in (0, 100]"),
        (["--size-mib", "lots"], "invalid int value"),
    ],
)
def test_bad_arguments_exit_2_naming_the_option(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        kvm.parse_args(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def measured(cbt_s: float, hash_s: float) -> kvm.Measured:
    return kvm.Measured(
        size_bytes=1 << 30,
        changed_bytes=10 << 20,
        bitmap_dirty_bytes=10 << 20,
        seed_s=9.0,
        cbt_cycle_s=cbt_s,
        cbt_ship_s=cbt_s / 2,
        cbt_bytes_read=12 << 20,
        cbt_change_path="cbt",
        hash_cycle_s=hash_s,
        hash_ship_s=hash_s - 0.1,
        hash_bytes_read=1 << 30,
        hash_change_path="hash-compare",
        restore_identical=True,
    )


def test_the_report_is_one_json_object_with_the_ratio_and_its_target() -> None:
    args = kvm.parse_args([])
    out = kvm.report(measured(0.5, 10.0), args)
    assert json.loads(json.dumps(out)) == out
    assert set(out) >= {
        "size_bytes",
        "changed_bytes",
        "bitmap_dirty_bytes",
        "cbt",
        "hash_compare",
        "restore_identical",
    }
    assert set(out["cbt"]) == set(out["hash_compare"]) == {"cycle_s", "ship_s", "bytes_read", "change_path"}
    assert out["cbt_vs_hash_compare"] == 0.05 and out["target_met"] is True
    assert out["bytes_read_vs_dirty"] == 1.2
    assert out["target"] == {"cbt_vs_hash_compare": ["<=", 0.2]}
    slow = kvm.report(measured(3.0, 10.0), args)
    assert slow["cbt_vs_hash_compare"] == 0.3 and slow["target_met"] is False
