"""Bearer tokens for the HTTP API: a YAML file of hashed tokens, each with a role and a scope of plans.

The file holds SHA-256 hashes only, so reading it (a backup, a config repo, a support bundle) gives no
one a usable token::

    tokens:
      - name: dr-oncall            # who, in the audit log and in gate approvals
        sha256: 9f86d08...         # sha256 of the token; `seawall api new-token` prints both
        role: operator             # viewer | operator | admin
        plans: [erp-dr]            # or "*" for every plan
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from seawall.contract.names import NAME_PATTERN


class Role(IntEnum):
    """Ordered: each role may do everything the ones below it may."""

    viewer = 1
    operator = 2
    admin = 3


_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$"


class TokenEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME, description="who holds the token, as the audit log names them")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="hex SHA-256 of the token, lower case")
    role: Literal["viewer", "operator", "admin"]
    plans: Literal["*"] | list[str] = Field(description='"*" or the plans this token may act on')


class TokenFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tokens: list[TokenEntry]


@dataclass(frozen=True)
class Principal:
    """Who is calling: a token's name, role and scope (None: every plan)."""

    name: str
    role: Role
    plans: frozenset[str] | None

    def may(self, role: Role) -> bool:
        return self.role >= role

    def sees(self, plan: str) -> bool:
        return self.plans is None or plan in self.plans

    @property
    def scope(self) -> str | list[str]:
        return "*" if self.plans is None else sorted(self.plans)


class TokenFileError(ValueError):
    """The token file is unusable; ``errors`` are ``file:line: field: message`` lines."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A random token: 256 bits, URL-safe, with a prefix that secret scanners can recognise."""
    return "swl_" + secrets.token_urlsafe(32)


class Tokens:
    """The loaded token file: looks a presented bearer token up by its hash, in constant time."""

    def __init__(self, entries: Iterable[TokenEntry]) -> None:
        self._entries = [
            (
                bytes.fromhex(e.sha256),
                Principal(e.name, Role[e.role], None if e.plans == "*" else frozenset(e.plans)),
            )
            for e in entries
        ]

    def __len__(self) -> int:
        return len(self._entries)

    def authenticate(self, token: str) -> Principal | None:
        digest = hashlib.sha256(token.encode()).digest()
        found: Principal | None = None
        # Compare against every entry, without stopping at a match: the time taken says nothing about
        # which entry (or whether any) matched.
        for stored, principal in self._entries:
            if hmac.compare_digest(stored, digest):
                found = principal
        return found


def _line_of(root: yaml.Node | None, loc: Sequence[str | int]) -> int:
    """The 1-based line of the YAML node at ``loc`` (the nearest ancestor that exists)."""
    node = root
    line = node.start_mark.line + 1 if node is not None else 1
    for part in loc:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == part:
                    child = value
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            child = node.value[part]
        if child is None:
            break
        node = child
        line = node.start_mark.line + 1
    return line


def _field(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _message(error: Any) -> str:
    kind, loc = error["type"], error["loc"]
    if kind == "extra_forbidden" and loc and loc[-1] in ("token", "secret", "value", "password"):
        return "a plain token is not allowed in the file: store its sha256 (`seawall api new-token`)"
    if kind == "extra_forbidden":
        return "unknown field (allowed: name, sha256, role, plans)" if len(loc) > 1 else "unknown field"
    if kind == "string_pattern_mismatch" and loc and loc[-1] == "sha256":
        return "must be 64 lower-case hex digits (the SHA-256 of the token, not the token)"
    if kind in ("literal_error", "list_type") and loc and loc[-1] == "plans":
        return 'must be "*" (every plan) or a list of plan names'
    if kind == "literal_error" and loc and loc[-1] == "role":
        return f"must be one of viewer, operator, admin (got {error.get('input')!r})"
    return str(error["msg"])


def parse_tokens(text: str, source: str = "<tokens>") -> Tokens:
    """Parse and check a token file; every problem is reported at once, each with its line."""
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise TokenFileError([f"{source}:{line}: not valid YAML: {getattr(exc, 'problem', exc)}"]) from None
    if not isinstance(data, dict):
        raise TokenFileError([f"{source}:1: expected a mapping with a 'tokens' list"])
    try:
        parsed = TokenFile.model_validate(data)
    except ValidationError as exc:
        seen: set[tuple[int, str, str]] = set()
        errors: list[tuple[int, str, str]] = []
        for error in exc.errors():
            # A union (plans: "*" | list) reports once per branch; the loc names the branch: drop it.
            loc = [p for p in error["loc"] if p not in ("literal['*']", "list[str]")]
            item = (_line_of(root, loc), _field(loc), _message({**error, "loc": loc}))
            if item not in seen:
                seen.add(item)
                errors.append(item)
        raise TokenFileError(
            [f"{source}:{line}: {field}: {msg}" for line, field, msg in sorted(errors)]
        ) from None
    problems: list[str] = []
    names: dict[str, int] = {}
    hashes: dict[str, int] = {}
    for index, entry in enumerate(parsed.tokens):
        line = _line_of(root, ["tokens", index])
        if entry.name in names:
            problems.append(f"{source}:{line}: tokens[{index}].name: {entry.name!r} is already used above")
        names.setdefault(entry.name, index)
        if entry.sha256 in hashes:
            problems.append(
                f"{source}:{line}: tokens[{index}].sha256: the same token as tokens[{hashes[entry.sha256]}]"
            )
        hashes.setdefault(entry.sha256, index)
        if isinstance(entry.plans, list):
            for pi, plan in enumerate(entry.plans):
                if not re.match(NAME_PATTERN, plan):
                    at = _line_of(root, ["tokens", index, "plans", pi])
                    problems.append(
                        f"{source}:{at}: tokens[{index}].plans[{pi}]: {plan!r} is not a plan name"
                    )
    if problems:
        raise TokenFileError(problems)
    return Tokens(parsed.tokens)


def load_tokens(path: str | Path) -> Tokens:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise TokenFileError([f"{path}: cannot read the token file: {exc.strerror or exc}"]) from None
    return parse_tokens(text, str(path))
