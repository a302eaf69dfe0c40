"""YAML with line numbers: read one file into data plus the node tree that says where each key is.

Refuses what PyYAML would accept silently or never finish: duplicate keys (the last would win),
recursive aliases and alias bombs. Every refusal is a ``PlanError`` at a line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from seawall.plans.errors import Loc, PlanError, format_loc


@dataclass
class Document:
    """A parsed YAML file: its data, and the node tree that locates a key path at a line."""

    path: str  # as the user spelled it, for messages
    real: Path
    data: dict[str, Any]
    root: yaml.MappingNode

    def line(self, loc: Loc) -> int:
        """The line of the deepest node ``loc`` reaches: a key's line, or its enclosing mapping's."""
        node: yaml.Node = self.root
        line = node.start_mark.line + 1
        for part in loc:
            if isinstance(node, yaml.MappingNode) and isinstance(part, str):
                for key, value in node.value:
                    if isinstance(key, yaml.ScalarNode) and key.value == part:
                        line, node = key.start_mark.line + 1, value
                        break
                else:
                    return line
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                return line
        return line

    def error(self, loc: Loc, message: str) -> PlanError:
        return PlanError(self.path, self.line(loc), format_loc(loc), message)


def _duplicate_keys(node: yaml.Node, loc: Loc, seen: set[int]) -> list[tuple[int, Loc, str]]:
    """PyYAML keeps the last of two equal keys silently; a plan must not hide one half of itself."""
    if id(node) in seen:
        return []
    seen.add(id(node))
    found: list[tuple[int, Loc, str]] = []
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
                continue
            line = key.start_mark.line + 1
            if key.value in first:
                found.append((line, (*loc, key.value), f"duplicate key (first at line {first[key.value]})"))
            else:
                first[key.value] = line
            found.extend(_duplicate_keys(value, (*loc, key.value), seen))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            found.extend(_duplicate_keys(item, (*loc, index), seen))
    return found


_MAX_EXPANDED_NODES = 200_000


def _expanded_size(node: yaml.Node, memo: dict[int, int], active: set[int]) -> int:
    """How many nodes the document has once aliases are expanded (validation walks every copy).

    A few nested aliases can expand to billions of nodes ("billion laughs"); a recursive alias never
    ends. Both are reported instead of hanging the checker.
    """
    key = id(node)
    if key in memo:
        return memo[key]
    if key in active:
        raise _AliasError("a recursive alias (an anchor used inside itself)", node.start_mark.line + 1)
    active.add(key)
    size = 1
    if isinstance(node, yaml.MappingNode):
        size += sum(_expanded_size(k, memo, active) + _expanded_size(v, memo, active) for k, v in node.value)
    elif isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(item, memo, active) for item in node.value)
    active.discard(key)
    if size > _MAX_EXPANDED_NODES:
        raise _AliasError(
            f"aliases expand to more than {_MAX_EXPANDED_NODES} nodes", node.start_mark.line + 1
        )
    memo[key] = size
    return size


class _AliasError(Exception):
    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


class _Located(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line, self.message = line, message


def _line_of(text: str, position: int) -> int:
    return text.count("\n", 0, max(0, position)) + 1


def _parse(text: str) -> tuple[yaml.Node | None, Any, list[tuple[int, Loc, str]]]:
    """The node tree and the data, or ``_Located`` naming the line and the reason: every failure of
    PyYAML's reader, scanner, parser, composer and constructor, and of the values it builds (a
    timestamp like 2026-02-30 raises ValueError from ``datetime``, deep nesting a RecursionError).
    Duplicate keys are found before construction, which flattens merge keys into their mappings."""
    try:
        # The reader rejects control characters already here, before the first token.
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:
        raise _Located(_line_of(text, exc.position), f"invalid YAML: {_reader_problem(exc)}") from None
    try:
        root = loader.get_single_node()
        if root is None:
            return None, None, []
        try:
            _expanded_size(root, {}, set())
        except _AliasError as exc:
            raise _Located(exc.line, f"invalid YAML: {exc}") from None
        duplicates = _duplicate_keys(root, (), set())
        if duplicates:
            return root, None, duplicates
        try:
            return root, loader.construct_document(root), []
        except (ValueError, TypeError, OverflowError) as exc:
            raise _Located(_bad_scalar_line(root), f"invalid YAML value: {exc}") from None
    except yaml.reader.ReaderError as exc:
        raise _Located(_line_of(text, exc.position), f"invalid YAML: {_reader_problem(exc)}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = f"invalid YAML: {exc.problem or 'cannot parse'}"
        if exc.context:
            started = f" at line {exc.context_mark.line + 1}" if exc.context_mark is not None else ""
            message += f" ({exc.context}{started})"
        raise _Located(mark.line + 1 if mark is not None else 1, message) from None
    except yaml.YAMLError as exc:
        raise _Located(1, f"invalid YAML: {exc}") from None
    except RecursionError:
        raise _Located(1, "invalid YAML: nested too deeply") from None
    finally:
        loader.dispose()


def _reader_problem(exc: yaml.reader.ReaderError) -> str:
    char = exc.character
    shown = f"#x{char:04x}" if isinstance(char, int) else repr(char)
    return f"special character {shown} is not allowed ({exc.reason})"


def _bad_scalar_line(root: yaml.Node) -> int:
    """The line of the first scalar that cannot be built on its own (the constructor's ValueError
    carries no position)."""
    stack = [root]
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            try:
                yaml.SafeLoader("").construct_object(node, deep=True)
            except Exception:
                return node.start_mark.line + 1
        elif isinstance(node, yaml.MappingNode):
            for key, value in reversed(node.value):
                stack += [value, key]
        elif isinstance(node, yaml.SequenceNode):
            stack += list(reversed(node.value))
    return root.start_mark.line + 1


def read_yaml(path: str | Path) -> tuple[Document | None, list[PlanError]]:
    """The file as a ``Document``, or why it is not one (unreadable, not UTF-8, not YAML, not a mapping)."""
    shown = str(path)
    real = Path(path)
    try:
        text = real.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, [PlanError(shown, 1, "", "file not found")]
    except IsADirectoryError:
        return None, [PlanError(shown, 1, "", "is a directory, not a file")]
    except UnicodeDecodeError as exc:
        return None, [PlanError(shown, 1, "", f"not UTF-8 text ({exc.reason} at byte {exc.start})")]
    except OSError as exc:
        return None, [PlanError(shown, 1, "", f"cannot read: {exc.strerror or exc}")]

    try:
        root, data, duplicates = _parse(text)
    except _Located as exc:
        return None, [PlanError(shown, exc.line, "", exc.message)]
    if root is None:
        return None, [PlanError(shown, 1, "", "file is empty")]
    if duplicates:
        return None, [PlanError(shown, line, format_loc(loc), msg) for line, loc, msg in duplicates]

    if not isinstance(root, yaml.MappingNode) or not isinstance(data, dict):
        return None, [
            PlanError(shown, root.start_mark.line + 1, "", "expected a mapping starting with 'kind: ...'")
        ]
    return Document(shown, real, data, root), []
