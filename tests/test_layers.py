"""The rooms form a DAG: each folder imports only the folders below it that it may, and no
module imports a module that imports it, counting every import (inside functions too)."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

from tests.conftest import ROOT

NOT_ROOMS = {"tests", "bench", "artifacts"}

# folder -> the folders it may import (ARCHITECTURE.md's layer picture, read strictly)
ALLOWED: dict[str, set[str]] = {
    "core": set(),  # the base
    "evaluators": {"core"},  # the plugins: the base only
    "proposers": {"core"},
    "trackers": {"core"},  # where runs are recorded too (MLflow): the base only
    "steps": {"core", "evaluators", "proposers", "trackers"},  # the one layer that loads plugins
    "tasks": {  # steps wrapped; plugins' exceptions
        *("core", "evaluators", "proposers", "trackers", "steps"),
    },
    "flows": {"core", "trackers", "steps", "tasks"},  # tasks composed, with the types below
    "email_ab": {"core", "evaluators"},  # a plugin package: its kind's base, and the base
    "autoresearch": {
        *("core", "evaluators", "proposers", "trackers", "steps", "tasks", "flows", "email_ab"),
    },
}


def rooms(root: Path) -> set[str]:
    return {
        p.name
        for p in root.iterdir()
        if p.is_dir() and (p / "__init__.py").exists() and p.name not in NOT_ROOMS
    }


def modules(root: Path) -> dict[str, Path]:
    """Dotted name -> file, for every module in the rooms (a package is its __init__.py)."""
    found = {}
    for room in rooms(root):
        for path in (root / room).rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported(path: Path) -> set[str]:
    """Top-level names of every module a file imports, wherever the import statement is."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def ours(name: str, known: dict[str, Path]) -> str | None:
    """The module of ours that `name` (a module or a name in one) is, its longest known prefix."""
    parts = name.split(".")
    while parts and ".".join(parts) not in known:
        parts.pop()
    return ".".join(parts) or None


def targets(node: ast.Import | ast.ImportFrom, module: str, known: dict[str, Path]) -> set[str]:
    """What one import statement imports: `from x import y` imports x.y where y is a module."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names}
    package = module.split(".") if known[module].name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - node.level + 1] if node.level else []
    source = ".".join([*base, *([node.module] if node.module else [])])
    return {f"{source}.{a.name}" if f"{source}.{a.name}" in known else source for a in node.names}


def module_graph(root: Path) -> dict[str, set[str]]:
    """module -> the modules of ours it imports, wherever the statement is."""
    known = modules(root)
    graph: dict[str, set[str]] = {}
    for module, path in known.items():
        nodes = ast.walk(ast.parse(path.read_text(), str(path)))
        names = set().union(
            *(
                targets(n, module, known)
                for n in nodes
                if isinstance(n, ast.Import | ast.ImportFrom)
            )
        )
        graph[module] = {m for m in (ours(n, known) for n in names) if m and m != module}
    return graph


def violations(graph: dict[str, set[str]], room: str) -> list[str]:
    """`module imports module` for each import of `room` that its allowed folders forbid."""
    allowed = ALLOWED.get(room, set()) | {room}
    return sorted(
        f"{module} imports {dep}"
        for module, deps in graph.items()
        if module.split(".")[0] == room
        for dep in deps
        if dep.split(".")[0] not in allowed
    )


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        return list(exc.args[1])
    return None


def test_every_room_has_its_allowed_imports() -> None:
    assert rooms(ROOT) == set(ALLOWED), "a new folder: say in ALLOWED what it may import"
    assert cycle(ALLOWED) is None, f"the allowed map has a cycle: {cycle(ALLOWED)}"


@pytest.mark.parametrize("room", sorted(ALLOWED))
def test_a_room_imports_only_what_it_may(room: str) -> None:
    found = violations(module_graph(ROOT), room)
    assert not found, f"{room}/ may import {sorted(ALLOWED[room])} only:\n" + "\n".join(found)


def test_no_module_imports_a_module_that_imports_it() -> None:
    found = cycle(module_graph(ROOT))
    assert found is None, "import cycle: " + " -> ".join(found or [])


def test_a_planted_back_import_is_found(tmp_path: Path) -> None:
    for path, body in {
        "core/m.py": "def f():\n    from steps import x  # inside a function counts too\n",
        "steps/x.py": "import core.m\n",
        "flows/__init__.py": "from steps.x import y\nfrom . import z\n",
        "flows/z.py": "",
    }.items():
        (tmp_path / path).parent.mkdir(exist_ok=True)
        (tmp_path / path).parent.joinpath("__init__.py").touch()
        (tmp_path / path).write_text(body)
    graph = module_graph(tmp_path)
    assert graph["core.m"] == {"steps.x"}, "`from steps import x`: the module steps.x"
    assert graph["flows"] == {"steps.x", "flows.z"}
    assert violations(graph, "core") == ["core.m imports steps.x"]
    found = cycle(graph)
    assert found is not None and set(found) == {"core.m", "steps.x"}
    (tmp_path / "core" / "m.py").write_text("import os\n")
    assert cycle(module_graph(tmp_path)) is None


@pytest.mark.parametrize(
    "room", ["core", "proposers", "evaluators", "trackers", "steps", "email_ab"]
)
def test_no_prefect_below_tasks(room: str) -> None:
    for path in (ROOT / room).rglob("*.py"):
        assert "prefect" not in imported(path), f"{path} imports prefect"
