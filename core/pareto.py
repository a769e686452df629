"""The Pareto front of a study with several objectives (study.yaml `metric.objectives`): every
measured candidate that no other beats on one objective without losing on another.

The study's metric is always the first objective; the others are numbers the evaluator prints
(the ledger's `secondary` column). The champion is still chosen by the metric (within the
constraints): the front shows what else was on offer.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.decide import Direction
from core.ledger import Row, Status

MEASURED = (Status.KEEP, Status.DISCARD)


@dataclass(frozen=True)
class Point:
    experiment: int
    commit: str
    values: tuple[float, ...]  # one per objective, in the study's order
    kept: bool
    description: str


def points(rows: list[Row], metric: str, objectives: dict[str, Direction]) -> list[Point]:
    """Every measured candidate that reports every objective (each commit once)."""
    out, seen = [], set()
    for r in rows:
        if r.status not in MEASURED or r.commit in seen:
            continue
        numbers = {metric: r.metric, **r.secondary}
        if all(name in numbers for name in objectives):
            seen.add(r.commit)
            values = tuple(numbers[name] for name in objectives)
            out.append(Point(r.experiment, r.commit, values, r.kept, r.description))
    return out


def dominates(a: Point, b: Point, directions: list[Direction]) -> bool:
    """`a` is at least as good as `b` on every objective and better on one."""
    better = False
    for x, y, d in zip(a.values, b.values, directions, strict=True):
        if (x > y) if d == "minimize" else (x < y):
            return False
        better = better or x != y
    return better


def front(found: list[Point], directions: list[Direction]) -> list[Point]:
    """The points no other point dominates, in the order of the first objective (best first).

    Best first on every objective in turn, a point can only be dominated by one before it,
    and then by one already on the front (dominance is transitive): one pass, not all pairs.
    """
    signs = [1 if d == "minimize" else -1 for d in directions]

    def best_first(p: Point) -> tuple[list[float], int]:
        return [s * v for s, v in zip(signs, p.values, strict=True)], p.experiment

    ordered = sorted(found, key=best_first)
    kept: list[Point] = []
    for p in ordered:
        if not any(dominates(q, p, directions) for q in kept):
            kept.append(p)
    return kept
