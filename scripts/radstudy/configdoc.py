"""README's configuration table, generated from ``config.schema.yaml``.

The schema is the one place config keys, defaults and their meaning live; this
module renders it as a markdown table (``| key | default | meaning |``, one row
per leaf key) and puts it between two markers in README.md::

    <!-- config-table:start -->
    ...generated...
    <!-- config-table:end -->

Run from the repository root::

    python -m radstudy.configdoc          # rewrite README.md's table (make docs)
    python -m radstudy.configdoc --check  # exit 1 when README.md is out of date

How the schema is walked:

* nested ``properties`` give dotted keys (``preprocess.n4.shrink_factor``); an
  object with properties gets a row of its own only when it has a description;
* an object whose ``additionalProperties`` is a structured schema (an object with
  ``properties`` or with a map of its own) is a map: it gets one row keyed with
  placeholders (``endpoints.{endpoint}``, ``models.{endpoint}.{model}``) and its
  entries' properties get rows below it (``models.{endpoint}.{model}.groups``).
  A placeholder is the map's ``propertyNames.title`` when the schema gives one,
  else the segment of the map's description written ``key name -> value``
  (``"endpoint -> model name -> {...}"`` gives ``{endpoint}`` and ``{model}``),
  else ``{name}``. A map of plain values (``cohort.repeats``) is a leaf;
* ``enum``, ``const``, ``oneOf`` and ``anyOf`` become a short hint in the meaning
  column (``one of: `zscore`, `nyul`, `none```); a key without a description
  gets its type as hint;
* defaults are YAML flow style in backticks (``[T1, T2]``, ``""``); no default
  leaves the cell empty;
* rows follow the schema's own property order; ``|`` is escaped everywhere.

Local ``$ref`` pointers (``#/$defs/...``) are followed; an object reached a
second time through the same ``$ref`` gets one row saying "same keys as" the key
where its keys are listed (a per-model ``selection`` block, for instance).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

START = "<!-- config-table:start -->"
END = "<!-- config-table:end -->"
HEADER = "| key | default | meaning |\n|---|---|---|"

_NO_DEFAULT = object()
_NAME_SEGMENT = re.compile(r"^[A-Za-z][A-Za-z0-9_ ]{0,40}$")


def format_default(value: Any) -> str:
    """A default value in compact YAML flow style (``[T1, T2]``, ``{a: 1}``, ``""``)."""
    if isinstance(value, dict):
        items = ", ".join(f"{format_default(k)}: {format_default(v)}" for k, v in value.items())
        return "{" + items + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(format_default(v) for v in value) + "]"
    if value == "" and isinstance(value, str):
        return '""'
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9, allow_unicode=True)
    text = text.strip()
    if text.endswith("\n..."):
        text = text[: -len("\n...")]
    elif text.endswith("..."):
        text = text[: -len("...")].strip()
    return text


def _escape(text: str) -> str:
    """Cell text on one line, with ``|`` escaped for a markdown table."""
    return " ".join(str(text).split()).replace("|", r"\|")


def _code(text: str) -> str:
    """``text`` as an inline code span (longer fences when it holds backticks)."""
    fence = "`"
    while fence in text:
        fence += "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _resolve(node: Any, root: dict) -> dict:
    """``node`` with local ``$ref`` pointers followed (a non-dict node becomes ``{}``)."""
    seen: set[str] = set()
    while isinstance(node, dict) and isinstance(node.get("$ref"), str):
        ref = node["$ref"]
        if not ref.startswith("#") or ref in seen:
            break
        seen.add(ref)
        target: Any = root
        for part in ref[1:].split("/"):
            if not part:
                continue
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                target = None
                break
            target = target[part]
        if not isinstance(target, dict):
            break
        merged = dict(target)
        merged.update({k: v for k, v in node.items() if k != "$ref"})
        node = merged
    return node if isinstance(node, dict) else {}


def _type_hint(node: dict, root: dict) -> str:
    """Short type/allowed-values text for one schema node ("" when there is nothing to say)."""
    node = _resolve(node, root)
    if "const" in node:
        return _code(format_default(node["const"]))
    if isinstance(node.get("enum"), list):
        return "one of: " + ", ".join(_code(format_default(v)) for v in node["enum"])
    for key in ("oneOf", "anyOf"):
        if isinstance(node.get(key), list):
            hints = [_type_hint(alt, root) or "any" for alt in node[key]]
            return " or ".join(dict.fromkeys(hints))
    kind = node.get("type")
    if isinstance(kind, list):
        return " or ".join(str(k) for k in kind)
    if kind == "array":
        items = _resolve(node.get("items", {}), root)
        inner = _type_hint(items, root) if items else ""
        if not inner:
            return "list"
        if inner.startswith("one of: "):
            return "list of: " + inner[len("one of: ") :]
        return f"list of {inner}"
    if kind == "object":
        return "mapping"
    return str(kind) if kind else ""


def _hint(node: dict, root: dict) -> str:
    """The hint shown in the meaning column: always for choices, else the type when undocumented."""
    node = _resolve(node, root)
    choice = "const" in node or any(k in node for k in ("enum", "oneOf", "anyOf"))
    if node.get("type") == "array":
        items = _resolve(node.get("items", {}), root)
        choice = choice or any(k in items for k in ("const", "enum", "oneOf", "anyOf"))
    if choice or not node.get("description"):
        return _type_hint(node, root)
    return ""


def _meaning(node: dict, root: dict) -> str:
    """Description plus hint, for the meaning column (unescaped)."""
    node = _resolve(node, root)
    text = " ".join(str(node.get("description", "")).split())
    hint = _hint(node, root)
    if text and hint:
        return f"{text} ({hint})"
    return text or hint


def _is_map(node: dict, root: dict) -> bool:
    """An object whose entries follow a structured schema (``additionalProperties``)."""
    value = node.get("additionalProperties")
    if not isinstance(value, dict):
        return False
    value = _resolve(value, root)
    return bool(value.get("properties")) or _is_map(value, root)


def _placeholders(map_node: dict, depth: int, taken: set[str]) -> list[str]:
    """Placeholder names for ``depth`` nested map levels (see the module docstring)."""
    described: list[str] = []
    segments = [s.strip() for s in str(map_node.get("description", "")).split("->")]
    if len(segments) > depth:
        for segment in segments[:depth]:
            if not _NAME_SEGMENT.match(segment):
                described = []
                break
            words = segment.split()
            if len(words) > 1 and words[-1] == "name":
                words = words[:-1]
            described.append("_".join(words))
    names: list[str] = []
    for level in range(depth):
        name = described[level] if described else "name"
        base, i = name, 2
        while name in taken or name in names:
            name, i = f"{base}{i}", i + 1
        names.append(name)
    return names


def _rows(
    node: dict, path: list[str], root: dict, taken: set[str], expanded: dict[str, str]
) -> Iterator[tuple[str, str, str]]:
    """``(key, default, meaning)`` rows for ``node`` at ``path``, in schema order.

    ``taken`` holds the map placeholders already used on ``path``; ``expanded``
    maps each ``$ref`` whose keys already have rows to the key they are under.
    """
    ref = node.get("$ref") if isinstance(node, dict) else None
    node = _resolve(node, root)
    properties = node.get("properties")
    structured = isinstance(properties, dict) and bool(properties)
    if isinstance(ref, str) and path and (structured or _is_map(node, root)):
        if ref in expanded:
            key, default, meaning = _row(path, node, root)
            same = f"same keys as {_code(expanded[ref])}"
            yield key, default, f"{meaning} ({same})" if meaning else same
            return
        expanded[ref] = ".".join(path)
    if structured:
        if path and node.get("description"):
            yield _row(path, node, root)
        for name, child in properties.items():
            yield from _rows(child, [*path, str(name)], root, taken, expanded)
    if _is_map(node, root):
        levels = [node]
        value = _resolve(node["additionalProperties"], root)
        while not value.get("properties") and _is_map(value, root):
            levels.append(value)
            value = _resolve(value["additionalProperties"], root)
        titles = []
        for level in levels:
            names = level.get("propertyNames")
            title = _resolve(names, root).get("title") if isinstance(names, dict) else None
            titles.append(str(title) if title else None)
        guessed = _placeholders(node, len(levels), taken)
        names = [t or g for t, g in zip(titles, guessed, strict=True)]
        keys = [*path, *(f"{{{n}}}" for n in names)]
        described = next(
            (lv.get("description") for lv in [*levels, value] if lv.get("description")), ""
        )
        default = node.get("default", _NO_DEFAULT)
        cell = "" if default is _NO_DEFAULT else _code(format_default(default))
        yield ".".join(keys), cell, " ".join(str(described).split())
        inner = dict(value)
        inner.pop("description", None)  # shown on the map's own row
        yield from _rows(inner, keys, root, taken | set(names), expanded)
    elif not structured and path:
        yield _row(path, node, root)


def _row(path: list[str], node: dict, root: dict) -> tuple[str, str, str]:
    """One row for a leaf (or a described object) at ``path``."""
    default = node.get("default", _NO_DEFAULT)
    cell = "" if default is _NO_DEFAULT else _code(format_default(default))
    return ".".join(path), cell, _meaning(node, root)


def config_table(schema: dict) -> str:
    """The markdown table ``| key | default | meaning |`` of every leaf key of ``schema``.

    Pure function of the schema (see the module docstring for the rules); the
    result ends without a newline.
    """
    lines = [HEADER]
    for key, default, meaning in _rows(schema, [], schema, set(), {}):
        lines.append(f"| {_escape(_code(key))} | {_escape(default)} | {_escape(meaning)} |")
    return "\n".join(lines)


def readme_with_table(readme_text: str, table: str) -> str:
    """``readme_text`` with the text between the config-table markers replaced by ``table``.

    Raises ``ValueError`` when a marker is missing, repeated or out of order.
    """
    starts, ends = readme_text.count(START), readme_text.count(END)
    if starts != 1 or ends != 1:
        raise ValueError(
            f"README needs exactly one {START} and one {END} marker (found {starts} and {ends})"
        )
    head, rest = readme_text.split(START)
    if END not in rest:
        raise ValueError(f"{END} comes before {START} in README")
    _, tail = rest.split(END)
    return f"{head}{START}\n{table.strip()}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    """CLI: rewrite README.md's config table from config.schema.yaml, or ``--check`` it."""
    parser = argparse.ArgumentParser(
        prog="python -m radstudy.configdoc",
        description="Generate README.md's configuration table from config.schema.yaml.",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if README.md is out of date")
    parser.add_argument("--schema", type=Path, default=Path("config.schema.yaml"))
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    args = parser.parse_args(argv)

    schema = yaml.safe_load(args.schema.read_text(encoding="utf-8"))
    readme = args.readme.read_text(encoding="utf-8")
    try:
        updated = readme_with_table(readme, config_table(schema))
    except ValueError as err:
        print(f"{args.readme}: {err}", file=sys.stderr)
        return 2
    if updated == readme:
        print(f"{args.readme}: configuration table is up to date")
        return 0
    if args.check:
        print(
            f"{args.readme}: configuration table is out of date with {args.schema}; run `make docs`",
            file=sys.stderr,
        )
        return 1
    args.readme.write_text(updated, encoding="utf-8")
    print(f"{args.readme}: configuration table regenerated from {args.schema}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
