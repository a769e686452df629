"""Build corpus.txt from text that ships with CPython: stdlib docstrings and pydoc topics.

Why this source: it is real English prose about programming, present on every machine with
Python, and under one permissive license (PSF License Agreement, see LICENSE-PSF.txt). The
committed corpus.txt was built with CPython 3.11.7; other versions give other bytes, which is
why prepare.py checks the sha256 of the committed file rather than rebuilding it.

Usage: python data/build_corpus.py data/corpus.txt
"""

from __future__ import annotations

import ast
import random
import sys
import sysconfig
from pathlib import Path

SKIP_TOP = {"site-packages", "test", "idlelib", "lib2to3", "turtledemo", "pydoc_data"}
SEED = 1337
DocNode = ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef


def _module_name(rel: Path) -> str:
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _walk(node: ast.AST, prefix: str) -> list[tuple[str, str]]:
    """(qualified name, docstring) for the node and every class or function inside it."""
    out: list[tuple[str, str]] = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            name = f"{prefix}.{child.name}"
            doc = ast.get_docstring(child)
            if doc:
                out.append((name, doc))
            out.extend(_walk(child, name))
    return out


def module_document(path: Path, name: str) -> str | None:
    """One document: the module's docstring, then each of its docstrings under its name."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError):
        return None
    parts = []
    doc = ast.get_docstring(tree)
    if doc:
        parts.append(f"{name}\n{doc.strip()}")
    parts.extend(f"{qual}\n{text.strip()}" for qual, text in _walk(tree, name))
    return "\n\n".join(parts) if parts else None


def documents() -> list[str]:
    """Every stdlib module's document and every pydoc topic, in a fixed order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    docs = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0] in SKIP_TOP or "tests" in rel.parts:
            continue
        doc = module_document(path, _module_name(rel))
        if doc:
            docs.append(doc)
    from pydoc_data.topics import topics

    docs.extend(f"topic {k}\n{topics[k].strip()}" for k in sorted(topics))
    return docs


def main(out: str) -> None:
    docs = documents()
    random.Random(SEED).shuffle(docs)  # so the validation tail is a sample, not the last modules
    Path(out).write_text("\n\n\n".join(docs) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1])
