"""Where the next candidate starts from: the search strategy (study.yaml `search:`).

`greedy` climbs from the champion, always. `tree` treats every measured candidate as a node and
extends the one with the best upper confidence bound: how close behind the champion it is (in
units of `margin`, a fraction of the champion's value; nodes further behind are not extended)
plus `exploration` * sqrt(ln(extensions) / (1 + its extensions)). So a line that looked a little
worse is extended once the champion's own children keep failing: the way out of a local optimum.
The champion is still the best node, and the study branch carries it. Pure: the ledger (its
`parent` column) and the candidates in flight are the whole state, so a restarted campaign
chooses as the killed one would have.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from core.decide import Direction, gain
from core.ledger import Champion, Row, Status
from core.study import SearchConfig

MEASURED = (Status.KEEP, Status.DISCARD)


@dataclass(frozen=True)
class Node:
    commit: str  # short, as the ledger has it
    metric: float
    experiment: int


def nodes(rows: list[Row]) -> list[Node]:
    """Each measured commit once, in the order it was first measured."""
    seen: dict[str, Node] = {}
    for r in rows:
        if r.status in MEASURED and r.commit not in ("", "-"):
            seen.setdefault(r.commit, Node(r.commit, r.metric, r.experiment))
    return list(seen.values())


def extensions(rows: list[Row], in_flight: list[str]) -> Counter[str]:
    """How often each node was built on: recorded rows (crashes too) and candidates in flight."""
    return Counter([r.parent for r in rows if r.parent] + [p[:7] for p in in_flight if p])


class Search:
    def __init__(self, config: SearchConfig, direction: Direction) -> None:
        self.config = config
        self.direction = direction

    @property
    def tree(self) -> bool:
        return self.config.strategy == "tree"

    def parent(self, rows: list[Row], champion: Champion, in_flight: list[str]) -> str:
        """The node the next candidate is built on (a short commit): the champion, or for a
        tree the node of the best upper confidence bound (ties: the champion, then the oldest)."""
        if not self.tree:
            return champion.commit
        scale = self.config.margin * max(abs(champion.metric), 1e-12)
        built = extensions(rows, in_flight)
        total = sum(built.values()) + 1

        def behind(node: Node) -> float:  # in margins: 0 for the champion, 1 at the edge
            return -gain(self.direction, node.metric, champion.metric) / scale

        def bound(node: Node) -> float:
            tried = built[node.commit]
            return self.config.exploration * math.sqrt(math.log(total) / (1 + tried)) - behind(node)

        close = [n for n in nodes(rows) if behind(n) <= 1 or n.commit == champion.commit]
        ranked = sorted(close, key=lambda n: (-bound(n), n.commit != champion.commit, n.experiment))
        return ranked[0].commit if ranked else champion.commit

    def describe(self, rows: list[Row]) -> str:
        """For the progress artifact: the tree's size and depth."""
        if not self.tree:
            return ""
        parents = {r.commit: r.parent for r in rows if r.status in MEASURED and r.parent}
        depth = 0
        for commit in parents:
            d, seen = 0, set()
            while commit in parents and commit not in seen:
                seen.add(commit)
                commit, d = parents[commit], d + 1
            depth = max(depth, d)
        return f"tree: {len(nodes(rows))} nodes, {depth} deep"
