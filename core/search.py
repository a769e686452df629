"""Where the next candidate starts from: the search strategy (study.yaml `search:`).

- `greedy` climbs from the champion, always.
- `tree` treats every measured candidate as a node and extends the one with the best upper
  confidence bound: how close behind the champion it is (in units of `margin`, a fraction of
  the champion's value; nodes further behind are not extended) plus `exploration` *
  sqrt(ln(extensions) / (1 + its extensions)). So a line that looked a little worse is extended
  once the champion's own children keep failing: the way out of a local optimum.
- `islands`: experiment n belongs to island (n - 2) mod k + 1 and climbs from its island's best
  node; every `migrate_every` experiments the best node of all joins every island.

The champion is always the best node, and the study branch carries it. Pure: the ledger (its
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
    def greedy(self) -> bool:
        """Every candidate on the champion: one that beat an older champion is applied again on
        the champion now (the other strategies keep their nodes, each reachable)."""
        return self.config.strategy == "greedy"

    def parent(
        self, rows: list[Row], champion: Champion, in_flight: list[str], experiment: int
    ) -> str:
        """The node experiment `experiment` is built on (a short commit)."""
        if self.config.strategy == "tree":
            return self._tree(rows, champion, in_flight)
        if self.config.strategy == "islands":
            return self._island(rows, champion, experiment)
        return champion.commit

    def _tree(self, rows: list[Row], champion: Champion, in_flight: list[str]) -> str:
        """The node of the best upper confidence bound (ties: the champion, then the oldest)."""
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

    def island(self, experiment: int) -> int:
        return (experiment - 2) % self.config.islands + 1 if experiment > 1 else 0

    def _island(self, rows: list[Row], champion: Champion, experiment: int) -> str:
        """The best node of the experiment's island, the baseline and the last migrant."""
        every = self.config.migrate_every
        migrated = (experiment - 1) // every * every  # the last migration, after this number
        found = nodes(rows)
        mine = [n for n in found if self.island(n.experiment) in (0, self.island(experiment))]
        migrants = [n for n in found if n.experiment <= migrated]
        pool = mine + ([self._best(migrants)] if migrants else [])
        return self._best(pool).commit if pool else champion.commit

    def _best(self, pool: list[Node]) -> Node:
        """The best metric (ties: the oldest node)."""
        sign = 1 if self.direction == "minimize" else -1
        return min(pool, key=lambda n: (sign * n.metric, n.experiment))

    def describe(self, rows: list[Row]) -> str:
        """For the progress artifact: the tree's size and depth, or each island's best."""
        if self.config.strategy == "islands":
            islands = range(1, self.config.islands + 1)
            return "islands: best " + ", ".join(self._island_best(rows, k) for k in islands)
        if self.config.strategy != "tree":
            return ""
        parents = {r.commit: r.parent for r in rows if r.status in MEASURED and r.parent}
        depth = max((_depth(parents, c) for c in parents), default=0)
        return f"tree: {len(nodes(rows))} nodes, {depth} deep"

    def _island_best(self, rows: list[Row], island: int) -> str:
        mine = [n for n in nodes(rows) if self.island(n.experiment) in (0, island)]
        return f"{self._best(mine).metric:.4g}" if mine else "-"


def _depth(parents: dict[str, str], commit: str) -> int:
    """How many parents up from `commit` to a root."""
    d, seen = 0, set()
    while commit in parents and commit not in seen:
        seen.add(commit)
        commit, d = parents[commit], d + 1
    return d
