"""The rooms form a DAG: no folder imports a folder that imports it, counting every import."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

from tests.conftest import ROOT

NOT_ROOMS = {"tests", "bench", "artifacts"}


def rooms(root: Path) -> set[str]:
    return {
        p.name
        for p in root.iterdir()
        if p.is_dir() and (p / "__init__.py").exists() and p.name not in NOT_ROOMS
    }


def imported(path: Path) -> set[str]:
    """Top-level names of every module a file imports, wherever the import statement is."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def folder_graph(root: Path) -> dict[str, set[str]]:
    """room -> the other rooms its files import."""
    known = rooms(root)
    graph: dict[str, set[str]] = {room: set() for room in known}
    for room in known:
        for path in (root / room).rglob("*.py"):
            graph[room] |= (imported(path) & known) - {room}
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        return list(exc.args[1])
    return None


def test_the_rooms_form_a_dag() -> None:
    graph = folder_graph(ROOT)
    assert {"core", "proposers", "evaluators", "steps", "tasks", "flows", "autoresearch"} <= set(
        graph
    )
    assert cycle(graph) is None, f"import cycle between rooms: {cycle(graph)}"
    assert graph["core"] == set(), "the base imports nothing of ours above it"
    assert graph["proposers"] <= {"core"} and graph["evaluators"] <= {"core"}


def test_a_planted_back_import_is_found(tmp_path: Path) -> None:
    for room, body in {
        "core": "def f():\n    from steps import x  # inside a function counts too\n",
        "steps": "import core.thing\n",
        "flows": "from steps.lab import Lab\n",
    }.items():
        (tmp_path / room).mkdir()
        (tmp_path / room / "__init__.py").write_text("")
        (tmp_path / room / "m.py").write_text(body)
    graph = folder_graph(tmp_path)
    assert graph == {"core": {"steps"}, "steps": {"core"}, "flows": {"steps"}}
    found = cycle(graph)
    assert found is not None and set(found) == {"core", "steps"}
    (tmp_path / "core" / "m.py").write_text("import os\n")
    assert cycle(folder_graph(tmp_path)) is None


@pytest.mark.parametrize("room", ["core", "proposers", "evaluators", "steps"])
def test_no_prefect_below_tasks(room: str) -> None:
    for path in (ROOT / room).rglob("*.py"):
        assert "prefect" not in imported(path), f"{path} imports prefect"
