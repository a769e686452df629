"""House rules a reader can count: no class with more than about 25 members (methods and
attributes; a study.yaml schema's fields are its keys, not its members), no function over 50
lines. `python -m tests.test_house` prints the figures."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

ROOMS = ("core", "evaluators", "proposers", "steps", "tasks", "flows", "email_ab", "autoresearch")
MAX_MEMBERS = 28
MAX_LINES = 50


def trees(root: Path) -> list[tuple[Path, ast.Module]]:
    return [
        (path, ast.parse(path.read_text(), str(path)))
        for room in ROOMS
        for path in sorted((root / room).rglob("*.py"))
    ]


def members(node: ast.ClassDef) -> set[str]:
    """Its methods, the attributes its methods set on self and its class-level names; of a
    schema (a `...Config` model), its methods only."""
    schema = node.name.endswith("Config")
    found: set[str] = set()
    for item in node.body:
        if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
            found.add(item.name)
            found |= {
                sub.attr
                for sub in ast.walk(item)
                if isinstance(sub, ast.Attribute)
                and isinstance(sub.ctx, ast.Store)
                and isinstance(sub.value, ast.Name)
                and sub.value.id == "self"
            }
        elif not schema and isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            found.add(item.target.id)
        elif not schema and isinstance(item, ast.Assign):
            found |= {t.id for t in item.targets if isinstance(t, ast.Name)}
    return found


def class_sizes(root: Path) -> list[tuple[int, str]]:
    return sorted(
        (
            (len(members(node)), f"{path.relative_to(root)}:{node.name}")
            for path, tree in trees(root)
            for node in ast.walk(tree)
            if isinstance(node, ast.ClassDef)
        ),
        reverse=True,
    )


def long_functions(root: Path) -> list[tuple[int, str]]:
    return sorted(
        (
            (node.end_lineno - node.lineno + 1, f"{path.relative_to(root)}:{node.name}")
            for path, tree in trees(root)
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.end_lineno - node.lineno + 1 > MAX_LINES
        ),
        reverse=True,
    )


def test_no_class_has_more_than_about_25_members() -> None:
    big = [c for c in class_sizes(ROOT) if c[0] > MAX_MEMBERS]
    assert not big, f"split these by job: {big}"


def test_no_function_is_over_50_lines() -> None:
    assert not long_functions(ROOT)


if __name__ == "__main__":
    print("largest classes (members):", class_sizes(ROOT)[:5])
    print(f"functions over {MAX_LINES} lines:", long_functions(ROOT))
