"""Protected: the evaluator of template-speed. Correct first, then fast.

The renderer (renderer.py, editable) runs in a child process (render_corpus.py) that renders
every template of corpus/templates with PASSES contexts chosen here: the shop of
corpus/shop.json as it is, then with its lists rotated and its numbers moved, from an offset
drawn for each evaluation, so that no two passes, and no two evaluations, render alike (a cache
of outputs cannot pay). The time is the CPU time (user and system) of the child and of anything
it started, as the kernel counted it for this process: the candidate cannot report its own, and
unlike wall clock it leaves out the time other work on the machine held the CPU (and
run_child's polling, which rounds a wall-clock time up by as much as 50 ms). It is printed as
`render_cpu_ms`, but only when the outputs are right: every pass must equal python-liquid's,
rendered here after the child has exited, where no candidate code runs (a renderer wrong on
one pass in forty would otherwise be faster most of the time). The first template that
differs fails the evaluation (exit 1), named, with where and how it differs: the corpus is
the gate, as Shopify's 974 unit tests were for Liquid's 53% speed-up. Beside the time, the
kernel's count of the child's memory: its peak (`peak_rss_mb`) and the pages it touched first
(`page_faults`), which study.yaml constrains (Liquid's speed-up came with 61% fewer
allocations; a faster renderer that buys its speed with memory is discarded).
"""

from __future__ import annotations

import copy
import hashlib
import json
import resource
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from evaluators.isolate import ResultError, open_result, run_child

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
PASSES = 40  # contexts each template is rendered with, in one timed process
TIMEOUT_S = 30.0
MAX_OUTPUT_BYTES = 64 * 2**20


def load_corpus() -> tuple[list[str], list[str], dict[str, Any]]:
    """Template names (corpus-relative paths), their sources, and the base context."""
    paths = sorted((CORPUS / "templates").glob("*.liquid"))
    names = [p.relative_to(HERE).as_posix() for p in paths]
    return names, [p.read_text() for p in paths], json.loads((CORPUS / "shop.json").read_text())


def corpus_digest(sources: list[str], base: dict[str, Any]) -> str:
    """What the timings were measured on: results are comparable only on the same corpus."""
    text = json.dumps([sources, base], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def pass_context(base: dict[str, Any], k: int) -> dict[str, Any]:
    """The k-th context: the same shop, its lists rotated by k and its numbers moved."""
    context = copy.deepcopy(base)
    for key in ("products", "reviews", "menu"):
        items = context[key]
        shift = k % len(items)
        context[key] = items[shift:] + items[:shift]
    context["customer"]["orders_count"] = k % 6
    context["customer"]["total_spent"] = base["customer"]["total_spent"] + k
    for item in context["cart"]["items"]:
        item["quantity"] += k % 3
    context["settings"]["products_per_row"] = 2 + k % 3
    return context


def cpu_seconds() -> float:
    """User and system time of this process's finished (waited-for) children and theirs."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def memory() -> tuple[float, int]:
    """The children's peak resident memory (MB) and page faults served without I/O (each a
    page of memory the renderer touched first: its allocations, as the kernel counted them)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_maxrss / 1024, usage.ru_minflt


def read_outputs(folder: Path, passes: int, templates: int) -> list[list[str]]:
    """The child's outputs: `passes` lists of `templates` strings, or ResultError."""
    with open_result(folder / "outputs.json", MAX_OUTPUT_BYTES) as handle:
        try:
            outputs = json.loads(handle.read())
        except ValueError as exc:
            raise ResultError(f"outputs.json: not JSON: {exc}") from None
    shaped = (
        isinstance(outputs, list)
        and len(outputs) == passes
        and all(isinstance(row, list) and len(row) == templates for row in outputs)
        and all(isinstance(text, str) for row in outputs for text in row)
    )
    if not shaped:
        raise ResultError(f"outputs.json: expected {passes} lists of {templates} strings")
    return outputs


def difference(expected: str, got: str) -> str:
    """Where two outputs first differ, as line and column, with a little of each around it."""
    at = next((i for i, (a, b) in enumerate(zip(expected, got, strict=False)) if a != b), None)
    at = min(len(expected), len(got)) if at is None else at
    line = expected.count("\n", 0, at) + 1
    column = at - (expected.rfind("\n", 0, at) + 1) + 1
    return (
        f"line {line}, column {column}: expected {expected[at : at + 30]!r}, "
        f"got {got[at : at + 30]!r}"
    )


def gate(names: list[str], sources: list[str], contexts: list[Any], outputs: list[Any]) -> str:
    """'' when every pass equals python-liquid's outputs; else the first difference."""
    import liquid

    env = liquid.Environment()
    templates = [env.from_string(source) for source in sources]
    for k, context in enumerate(contexts):
        for i, name in enumerate(names):
            expected = templates[i].render(**context)
            if outputs[k][i] != expected:
                where = difference(expected, outputs[k][i])
                return f"the output differs from python-liquid's on {name} (pass {k}): {where}"
    return ""


def main() -> int:
    try:
        import liquid  # noqa: F401  (the reference engine)
    except ImportError:
        print("error: python-liquid is not installed: pip install -e '.[studies]'", file=sys.stderr)
        return 2
    names, sources, base = load_corpus()
    offset = secrets.randbelow(10**6)  # pass 0 is the shop as it is, so a report reads alike
    contexts = [pass_context(base, 0)] + [pass_context(base, offset + k) for k in range(1, PASSES)]
    print(f"# corpus_sha256 {corpus_digest(sources, base)}")
    with tempfile.TemporaryDirectory(prefix="template-speed-") as tmp:
        folder = Path(tmp)
        inputs = {"names": names, "sources": sources, "contexts": contexts}
        (folder / "inputs.json").write_text(json.dumps(inputs))
        child = [sys.executable, "-S", "-I", str(HERE / "render_corpus.py"), tmp]
        before, started, (_, faults) = cpu_seconds(), time.perf_counter(), memory()
        code = run_child(child, HERE, TIMEOUT_S)
        cpu_ms, wall_ms = 1000 * (cpu_seconds() - before), 1000 * (time.perf_counter() - started)
        peak_mb, faults = memory()[0], memory()[1] - faults
        if code != 0:
            why = f"ran past {TIMEOUT_S:g} s" if code is None else f"failed with exit code {code}"
            print(f"error: the rendering process {why}", file=sys.stderr)
            return 1
        try:
            outputs = read_outputs(folder, PASSES, len(names))
        except ResultError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    problem = gate(names, sources, contexts, outputs)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    print(f"templates: {len(names)}")
    print(f"passes: {PASSES}")
    print(f"render_wall_ms: {wall_ms:.1f}")
    print(f"peak_rss_mb: {peak_mb:.1f}")
    print(f"page_faults: {faults}")
    print(f"render_cpu_ms: {cpu_ms:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
