"""Search beyond greedy: a tree extends a node close behind the champion when the champion's
own children keep failing, which gets out of a local optimum that greedy cannot leave; it
resumes from the ledger as an uninterrupted campaign would have gone on."""

from __future__ import annotations

import re

import pytest

from core.ledger import Champion, Row, Status
from core.search import Search
from core.study import SearchConfig, StudyError
from proposers.base import Context, InvalidProposal, Learned, Proposal
from steps.lab import Lab
from steps.plugins import load_study
from tests.conftest import campaign

# a local optimum at X = 2; past a slightly worse ridge (3, 4), the global one at X = 8
SCORES = {0: 3.0, 1: 2.0, 2: 1.0, 3: 1.04, 4: 1.08, 5: 0.5, 6: 0.3, 7: 0.1, 8: 0.0, 9: 0.5}
DECEPTIVE = f"import model\nprint(f'score: {{ {SCORES!r}[int(model.X)]:.6f}}')\n"
TREE = "search: {strategy: tree, exploration: 1.0}\n"


class Step:
    """One step from the files it is shown: X + 1, else X - 1; never a value tried before."""

    name = "step"

    def propose(self, context: Context) -> Proposal:
        x = int(re.search(r"X = (\d+)", context.files["study/model.py"]).group(1))  # type: ignore[union-attr]
        for new in (x + 1, x - 1):
            if 0 <= new <= 9 and f"X={new}" not in context.tried:
                files = {"study/model.py": f"X = {new}\n"}
                return Proposal(f"X {x} -> {new}", files, self.name, f"X={new}")
        raise InvalidProposal(f"both neighbours of X = {x} were tried")

    def learn(self, context: Context, outcome: object) -> Learned:
        return Learned()


def row(n: int, status: Status, metric: float, parent: str = "") -> Row:
    return Row(n, status, f"#{n}", commit=f"c{n:06d}", metric=metric, parent=parent)


def test_a_tree_extends_a_close_node_once_the_champions_children_fail() -> None:
    tree = Search(SearchConfig(strategy="tree", exploration=1.0), "minimize")
    rows = [
        row(1, Status.KEEP, 2.0),
        row(2, Status.KEEP, 1.0, "c000001"),
        row(3, Status.DISCARD, 1.04, "c000002"),  # close behind: 0.4 of the margin
        row(4, Status.DISCARD, 1.5, "c000001"),  # far behind: never extended
    ]
    champion = Champion("c000002", 1.0, 2)
    assert tree.parent(rows, champion, [], 5) == "c000002"
    failed = [Row(n, Status.INVALID, "x", parent="c000002") for n in (5, 6)]
    assert tree.parent(rows + failed, champion, [], 7) == "c000003"
    assert tree.parent(rows + failed, champion, ["c000003" + "0" * 33], 7) == "c000002"
    greedy = Search(SearchConfig(), "minimize")
    assert greedy.parent(rows + failed, champion, [], 7) == "c000002"
    assert tree.describe(rows) == "tree: 4 nodes, 2 deep"


def test_a_tree_needs_a_rule_that_compares_with_the_recorded_champion(make_study) -> None:
    folder = make_study(decision="{rule: mannwhitney}", yaml_extra=TREE)
    with pytest.raises(StudyError, match="search.strategy: a tree search compares"):
        load_study(folder)


def scores(folder) -> list[float]:  # noqa: ANN001
    return [r.metric for r in Lab.open(folder).records.ledger.rows() if r.status == Status.KEEP]


@pytest.mark.usefixtures("prefect_server")
def test_greedy_stays_on_the_local_optimum_a_tree_gets_past_it(make_study) -> None:
    first = make_study(DECEPTIVE, model="X = 0\n")
    greedy = first.parent.rename(first.parent.parent / "greedy") / "study"  # room for another
    campaign(str(greedy), experiments=9, researcher=Step())
    assert min(scores(greedy)) == 1.0  # stuck: both neighbours of X = 2 tried, then invalid

    tree = make_study(DECEPTIVE, model="X = 0\n", yaml_extra=TREE)
    campaign(str(tree), experiments=6, researcher=Step())
    campaign(str(tree), experiments=5, researcher=Step())  # resumed from the ledger
    rows = Lab.open(tree).records.ledger.rows()
    assert min(scores(tree)) < 1.0, [(r.experiment, r.status, r.metric, r.parent) for r in rows]
    measured = [r.commit for r in rows if r.status in (Status.KEEP, Status.DISCARD)]
    assert len(measured) == len(set(measured))  # no node twice
    assert all(r.parent for r in rows[1:])  # every candidate names the node it was built on
    assert any(r.parent != prev.commit for prev, r in zip(rows, rows[1:], strict=False) if r.kept)


def test_islands_climb_apart_until_the_best_migrates() -> None:
    islands = Search(SearchConfig(strategy="islands", islands=2, migrate_every=4), "minimize")
    rows = [
        row(1, Status.KEEP, 3.0),
        row(2, Status.KEEP, 2.0, "c000001"),  # island 1
        row(3, Status.DISCARD, 2.5, "c000001"),  # island 2: its best, worse than island 1's
        row(4, Status.KEEP, 1.8, "c000002"),  # island 1
    ]
    champion = Champion("c000004", 1.8, 4)
    assert islands.parent(rows[:2], Champion("c000002", 2.0, 2), [], 3) == "c000001"
    assert islands.parent(rows[:3], Champion("c000002", 2.0, 2), [], 4) == "c000002"
    assert islands.parent(rows, champion, [], 5) == "c000004"  # migrated after experiment 4
    assert islands.describe(rows) == "islands: best 1.8, 2.5"


class Hop(Step):
    """The nearest untried value above X (up to X + 3), else below."""

    def propose(self, context: Context) -> Proposal:
        x = int(re.search(r"X = (\d+)", context.files["study/model.py"]).group(1))  # type: ignore[union-attr]
        for new in (x + 1, x + 2, x + 3, x - 1, x - 2):
            if 0 <= new <= 9 and f"X={new}" not in context.tried:
                files = {"study/model.py": f"X = {new}\n"}
                return Proposal(f"X {x} -> {new}", files, self.name, f"X={new}")
        raise InvalidProposal(f"every value near X = {x} was tried")


@pytest.mark.usefixtures("prefect_server")
def test_islands_resume_from_the_ledger_each_from_its_own_best(make_study) -> None:
    islands = "search: {strategy: islands, islands: 2, migrate_every: 4}\n"
    folder = make_study(DECEPTIVE, model="X = 0\n", yaml_extra=islands)
    campaign(str(folder), experiments=4, researcher=Hop())
    campaign(str(folder), experiments=4, researcher=Hop())  # resumed: the islands go on
    rows = Lab.open(folder).records.ledger.rows()
    search = Search(load_study(folder).config.search, "minimize")
    measured = [r.commit for r in rows if r.status in (Status.KEEP, Status.DISCARD)]
    assert len(measured) == len(set(measured)) and len(rows) == 8
    for r in rows[1:]:  # each built on what its island (or the last migrant) had best
        champ = next(x for x in reversed(rows[: r.experiment - 1]) if x.kept)
        before = rows[: r.experiment - 1]
        want = search.parent(before, Champion(champ.commit, champ.metric, champ.experiment),
                             [], r.experiment)  # fmt: skip
        assert r.parent == want, (r.experiment, r.parent, want)


def test_results_that_arrive_later_search_greedily(make_study) -> None:
    folder = make_study(yaml_extra="search: {strategy: tree}\n")
    ab = (
        "evaluator: {kind: http_ab, variant: [model.py],"
        " launch: {url: 'http://127.0.0.1:9/t', id_path: id},"
        " collect: {url: 'http://127.0.0.1:9/t/{id}', champion: [a, b], challenger: [c, d]}}\n"
        "metric: {name: rate, direction: maximize, decision: {rule: beta_binomial}}\n"
    )
    lines = (folder / "study.yaml").read_text().splitlines(keepends=True)
    kept = [line for line in lines if not line.startswith(("evaluator:", "metric:"))]
    (folder / "study.yaml").write_text("".join(kept) + ab)
    with pytest.raises(StudyError, match="search.strategy: an A/B test measures"):
        load_study(folder)
