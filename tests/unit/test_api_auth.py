"""The API's token file: hashes only, every mistake reported at its line; lookups by hash."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from seawall.api.auth import Role, TokenFileError, hash_token, load_tokens, new_token, parse_tokens

ROOT = Path(__file__).resolve().parents[2]
GOOD = hash_token("s3cret-token")


def errors(text: str) -> list[str]:
    with pytest.raises(TokenFileError) as caught:
        parse_tokens(text, "tokens.yaml")
    return caught.value.errors


def test_a_valid_file_authenticates_by_hash() -> None:
    tokens = parse_tokens(
        f"""tokens:
  - {{name: oncall, sha256: {GOOD}, role: operator, plans: [erp-dr]}}
  - {{name: boss, sha256: {hash_token("other")}, role: admin, plans: "*"}}
"""
    )
    who = tokens.authenticate("s3cret-token")
    assert who is not None and who.name == "oncall" and who.role is Role.operator
    assert who.sees("erp-dr") and not who.sees("payroll") and who.scope == ["erp-dr"]
    boss = tokens.authenticate("other")
    assert boss is not None and boss.plans is None and boss.sees("anything") and boss.may(Role.operator)
    assert tokens.authenticate(GOOD) is None, "the hash itself is not a token"
    assert tokens.authenticate("") is None and tokens.authenticate("s3cret-token ") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            f"tokens:\n  - name: a\n    sha256: {GOOD}\n    role: root\n    plans: '*'\n",
            ["tokens.yaml:4: tokens[0].role: must be one of viewer, operator, admin (got 'root')"],
        ),
        (
            "tokens:\n  - name: a\n    sha256: s3cret-token\n    role: viewer\n    plans: '*'\n",
            [
                "tokens.yaml:3: tokens[0].sha256: must be 64 lower-case hex digits "
                "(the SHA-256 of the token, not the token)"
            ],
        ),
        (
            f"tokens:\n  - name: a\n    token: hunter22\n    sha256: {GOOD}\n"
            "    role: viewer\n    plans: '*'\n",
            [
                "tokens.yaml:3: tokens[0].token: a plain token is not allowed in the file: "
                "store its sha256 (`seawall api new-token`)"
            ],
        ),
        (
            f"tokens:\n  - name: a\n    sha256: {GOOD}\n    role: viewer\n    plans: all\n",
            ['tokens.yaml:5: tokens[0].plans: must be "*" (every plan) or a list of plan names'],
        ),
        (
            f"tokens:\n  - name: a\n    sha256: {GOOD}\n    role: viewer\n",
            ["tokens.yaml:2: tokens[0].plans: Field required"],
        ),
        (
            f"tokens:\n  - {{name: a, sha256: {GOOD}, role: viewer, plans: '*'}}\n"
            f"  - {{name: a, sha256: {GOOD}, role: admin, plans: [Payroll]}}\n",
            [
                "tokens.yaml:3: tokens[1].name: 'a' is already used above",
                "tokens.yaml:3: tokens[1].sha256: the same token as tokens[0]",
                "tokens.yaml:3: tokens[1].plans[0]: 'Payroll' is not a plan name",
            ],
        ),
        (
            "tokens: [\n",
            ["tokens.yaml:2: not valid YAML: expected the node content, but found '<stream end>'"],
        ),
        ("- a\n- b\n", ["tokens.yaml:1: expected a mapping with a 'tokens' list"]),
        ("users: []\n", ["tokens.yaml:1: tokens: Field required", "tokens.yaml:1: users: unknown field"]),
    ],
    ids=["role", "plain-in-sha", "plain-token", "plans", "missing", "duplicates", "yaml", "shape", "keys"],
)
def test_mistakes_are_located_and_clear(text: str, expected: list[str]) -> None:
    assert errors(text) == expected


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(TokenFileError, match="cannot read the token file"):
        load_tokens(tmp_path / "missing.yaml")


def test_example_file_holds_hashes_only() -> None:
    path = ROOT / "examples" / "api-tokens.yml"
    tokens = load_tokens(path)
    assert len(tokens) >= 3
    for entry in yaml.safe_load(path.read_text())["tokens"]:
        assert set(entry) == {"name", "sha256", "role", "plans"}


def test_new_tokens_are_random_and_prefixed() -> None:
    a, b = new_token(), new_token()
    assert a != b and a.startswith("swl_") and len(a) > 40
