"""The portfolio proposer: members checked by their own kinds, each draw by its policy over the
ledger (floor, hybrid, UCB or round robin), the member named in each row, and a campaign of
mutate and optuna members under a real Prefect server."""

from __future__ import annotations

import contextvars
import sys
import types
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import ValidationError

import proposers
from core.ledger import Ledger, Row, Status
from core.study import AnyEvaluator, MetricConfig, ProposerConfig, Study, StudyConfig, StudyError
from proposers.base import Context, InvalidProposal, Kind, Learned, Outcome, Proposal
from proposers.portfolio import PortfolioConfig, PortfolioProposer, row_gains, tallies
from steps.plugins import load_study
from steps.report import proposers_frame, summary_markdown
from steps.sandboxes import runs_model_code


class FakeModelConfig(ProposerConfig):
    kind: Literal["fake_model"] = "fake_model"
    invalid: bool = False  # every proposal fails


class FakeTunerConfig(ProposerConfig):
    kind: Literal["fake_tuner"] = "fake_tuner"


class Fake:
    """A member that proposes nothing but its name and the experiment's, and notes what it
    learns from."""

    def __init__(self, config: Any, seed: int | None = None) -> None:
        self.config, self.seed = config, seed
        self.name = config.kind
        self.learned: list[Outcome] = []

    def propose(self, context: Context) -> Proposal:
        if getattr(self.config, "invalid", False):
            raise InvalidProposal("nothing to propose")
        return Proposal(
            f"{self.name} #{context.experiment}", {}, self.name, key=f"k{context.experiment}"
        )

    def learn(self, context: Context, outcome: Outcome) -> Learned:
        self.learned.append(outcome)
        return Learned(f"{self.name} learned\n")


@pytest.fixture(autouse=True)
def fake_kinds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two kinds of our own: one that writes code (a model's), one that tunes numbers."""
    for name, kind in (
        ("fake_model", Kind(FakeModelConfig, Fake)),
        ("fake_tuner", Kind(FakeTunerConfig, Fake, writes_code=False)),
    ):
        module = types.ModuleType(f"tests._{name}")
        module.KIND = kind  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, module.__name__, module)
        monkeypatch.setitem(proposers.KINDS.built_in, name, module.__name__)


def portfolio(*members: dict[str, Any], **options: Any) -> PortfolioConfig:
    return PortfolioConfig.model_validate({"members": list(members), **options})


TWO = ({"kind": "fake_model", "name": "cheap"}, {"kind": "fake_model", "name": "dear"})


def study_for(config: PortfolioConfig, direction: str = "minimize") -> Study:
    config_ = StudyConfig(
        name="toy",
        editable=["solution.py"],
        evaluator=AnyEvaluator(kind="command"),
        metric=MetricConfig(name="loss", direction=direction),
        proposer=config.model_dump(),
    )
    return Study(config_, Path("/toy/study"), Path("/toy"))


def context(study: Study, history: list[Row], in_flight: list[Proposal] | None = None) -> Context:
    return Context(
        study=study,
        program="",
        files={},
        protected=[],
        history=list(history),
        learnings="",
        last_crash=None,
        experiment=len(history) + 1,
        workdir=Path("."),
        in_flight=in_flight or [],
    )


# label -> (kept?, gain when kept, dollars, seconds)
Script = dict[str, tuple[bool, float, float, float]]


def simulate(
    config: PortfolioConfig,
    script: Script,
    draws: int,
    seed: int | None = None,
    direction: str = "minimize",
) -> list[Row]:
    """`draws` experiments of a portfolio over a ledger its members' scripted outcomes fill."""
    researcher = PortfolioProposer(config, seed)
    study = study_for(config, direction)
    sign = -1 if direction == "minimize" else 1
    champion = 100.0
    history = [Row(1, Status.KEEP, "baseline", metric=champion)]
    for _ in range(draws):
        proposal = researcher.propose(context(study, history))
        kept, up, usd, seconds = script[proposal.proposer]
        metric = champion + sign * up if kept else champion - sign
        champion = metric if kept else champion
        status = Status.KEEP if kept else Status.DISCARD
        history.append(
            Row(len(history) + 1, status, proposal.hypothesis, metric=metric,
                proposer=proposal.proposer, cost_usd=usd, duration_s=seconds)
        )  # fmt: skip
    return history


def drawn(history: list[Row]) -> Counter[str]:
    return Counter(r.proposer for r in history[1:])


# the policy ------------------------------------------------------------------------------


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_ucb_draws_the_member_that_gains_most_per_dollar(direction):
    """Both keep every change and gain alike; one costs a hundredth of the other."""
    script = {"fake_model:cheap": (True, 1.0, 0.01, 10), "fake_model:dear": (True, 1.0, 1.0, 10)}
    counts = drawn(simulate(portfolio(*TWO), script, 100, direction=direction))
    assert counts["fake_model:cheap"] > 3 * counts["fake_model:dear"], counts
    assert counts["fake_model:dear"] >= 10 - 1  # its floor (0.1 of the draws)


def test_an_offline_member_costs_its_time():
    """No dollars on either side: the member whose changes take a tenth of the time wins; with
    time priced at nothing, a gain that cost nothing counts the same either way."""
    members = ({"kind": "fake_tuner", "name": "quick"}, {"kind": "fake_tuner", "name": "slow"})
    script = {"fake_tuner:quick": (True, 1.0, 0.0, 6), "fake_tuner:slow": (True, 1.0, 0.0, 60)}
    counts = drawn(simulate(portfolio(*members), script, 60))
    assert counts["fake_tuner:quick"] > 2 * counts["fake_tuner:slow"], counts


def test_gain_counts_over_cost_a_member_that_never_keeps_is_drawn_little():
    script = {"fake_model:cheap": (False, 0, 0.01, 10), "fake_model:dear": (True, 0.5, 0.2, 10)}
    counts = drawn(simulate(portfolio(*TWO), script, 80))
    assert counts["fake_model:dear"] > 2 * counts["fake_model:cheap"], counts


@pytest.mark.parametrize("floor", [0.1, 0.25, 0.45])
def test_no_member_starves_whatever_it_gains(floor):
    """Three members, one gaining everything: every other gets its floor share at every point
    of the campaign (within one draw)."""
    members = (*TWO, {"kind": "fake_tuner"})
    script = {
        "fake_model:cheap": (True, 1.0, 0.001, 1),
        "fake_model:dear": (False, 0, 5.0, 100),
        "fake_tuner": (False, 0, 0.0, 100),
    }
    floor = min(floor, 1 / 3)
    history = simulate(portfolio(*members, floor=floor), script, 90)
    for n in range(1, 91):
        counts = drawn(history[: n + 1])
        for label in script:
            assert counts[label] >= floor * n - 1, (n, counts)


def test_round_robin_takes_turns():
    members = (*TWO, {"kind": "fake_tuner"})
    script = {label: (True, 1.0, 0.0, 1) for label in ("fake_model:cheap", "fake_model:dear")}
    script["fake_tuner"] = (False, 0, 0, 1)
    history = simulate(portfolio(*members, policy="round_robin", floor=0), script, 9)
    assert [r.proposer for r in history[1:]] == ["fake_model:cheap", "fake_model:dear",
                                                 "fake_tuner"] * 3  # fmt: skip


def test_the_draw_is_the_ledgers_same_seed_same_draws_and_a_restart_goes_on_alike():
    script = {"fake_model:cheap": (True, 1.0, 0.3, 10), "fake_model:dear": (True, 1.0, 0.3, 10)}
    config = portfolio(*TWO, seed=7)
    first, again = simulate(config, script, 30), simulate(config, script, 30)
    assert [r.proposer for r in first] == [r.proposer for r in again]
    # ties (alike members) are broken by the seed: another seed draws otherwise
    others = [[r.proposer for r in simulate(config, script, 30, seed=s)] for s in range(4)]
    assert len({tuple(o) for o in others}) > 1
    # a fresh proposer over any prefix of the ledger draws what the running one drew next
    study = study_for(config)
    for n in range(1, 30):
        fresh = PortfolioProposer(config).propose(context(study, first[:n]))
        assert fresh.proposer == first[n].proposer


def test_proposals_in_flight_count_as_draws():
    config = portfolio(*TWO, policy="round_robin", floor=0)
    study = study_for(config)
    history = [Row(1, Status.KEEP, "baseline", metric=1.0)]
    busy = [Proposal("x", {}, "fake_model:cheap", "k")]
    assert PortfolioProposer(config).propose(context(study, history)).proposer == "fake_model:cheap"
    assert PortfolioProposer(config).propose(context(study, history, busy)).proposer == (
        "fake_model:dear"
    )


def test_gains_are_over_the_champion_of_the_time():
    rows = [
        Row(1, Status.KEEP, "baseline", metric=10.0),
        Row(2, Status.DISCARD, "a", metric=9.0, proposer="x"),
        Row(3, Status.KEEP, "b", metric=8.0, proposer="x"),
        Row(4, Status.CRASH, "c", proposer="y"),
        Row(5, Status.KEEP, "d", metric=7.5, proposer="y"),
        Row(6, Status.HOLDOUT, "holdout", metric=1.0),
    ]
    assert row_gains(rows, "minimize") == [0.0, 0.0, 2.0, 0.0, 0.5, 0.0]
    t = tallies(["x", "y"], rows, ["y"], "minimize")
    assert (t["x"].draws, t["x"].keeps, t["x"].gain) == (2, 1, 2.0)
    assert (t["y"].draws, t["y"].rows, t["y"].gain) == (3, 2, 0.5)


# the hybrid ------------------------------------------------------------------------------


def test_after_a_model_keep_the_optimizer_tunes_its_numbers():
    """The model's change is kept: the next 3 draws are the optimizer's, whatever the policy
    says; the optimizer's own keeps hand nothing over."""
    members = ({"kind": "fake_model", "name": "opus"}, {"kind": "fake_tuner", "name": "tpe"})
    config = portfolio(*members, policy="round_robin", floor=0, tune_after_keep="tpe")
    script = {"fake_model:opus": (True, 1.0, 0.5, 10), "fake_tuner:tpe": (True, 0.1, 0.0, 5)}
    history = simulate(config, script, 9)
    assert [r.proposer for r in history[1:]] == (
        ["fake_model:opus"] + ["fake_tuner:tpe"] * 3
    ) * 2 + ["fake_model:opus"]
    # a discarded model change hands nothing over: round robin goes on
    script["fake_model:opus"] = (False, 0, 0.5, 10)
    history = simulate(config, script, 4)
    assert [r.proposer for r in history[1:]] == ["fake_model:opus", "fake_tuner:tpe"] * 2
    # tuning proposals in flight count: one is flying, two more are due
    study = study_for(config)
    kept = [Row(1, Status.KEEP, "baseline", metric=5.0), Row(2, Status.KEEP, "m", 4.0,
            proposer="fake_model:opus")]  # fmt: skip
    flying = [Proposal("t", {}, "fake_tuner:tpe", "k")] * 3
    assert PortfolioProposer(config).propose(context(study, kept, flying[:2])).proposer == (
        "fake_tuner:tpe"
    )
    assert PortfolioProposer(config).propose(context(study, kept, flying)).proposer == (
        "fake_model:opus"
    )


def test_the_tuner_must_be_a_member_that_writes_no_code():
    members = ({"kind": "fake_model", "name": "opus"}, {"kind": "fake_tuner"})
    assert portfolio(*members, tune_after_keep="fake_tuner").tune_after_keep == "fake_tuner"
    with pytest.raises(ValidationError, match="opus writes code"):
        portfolio(*members, tune_after_keep="opus")
    with pytest.raises(ValidationError, match="'optuna' is not a member"):
        portfolio(*members, tune_after_keep="optuna")


# names, learning, writes_code -------------------------------------------------------------


def test_rows_name_the_member_and_it_learns_what_it_proposed():
    config = portfolio(*TWO, {"kind": "fake_tuner"}, policy="round_robin")
    researcher = PortfolioProposer(config)
    study = study_for(config)
    history = [Row(1, Status.KEEP, "baseline", metric=1.0)]
    proposal = researcher.propose(context(study, history))
    assert proposal.proposer == "fake_model:cheap" and proposal.hypothesis == "fake_model #2"
    outcome = Outcome(proposal, "keep", 0.5, 1.0, "better")
    assert researcher.learn(context(study, history), outcome).text == "fake_model learned\n"
    cheap = researcher.members["fake_model:cheap"]
    assert isinstance(cheap, Fake) and cheap.learned[0].proposal.proposer == "fake_model"
    assert researcher.members["fake_model:dear"].learned == []  # type: ignore[attr-defined]
    stranger = Outcome(Proposal("h", {}, "claude", "k"), "keep", 0.5, 1.0, "")
    assert researcher.learn(context(study, history), stranger) == Learned()


def test_an_invalid_proposal_is_the_drawn_members():
    """The lab names an invalid proposal's row by researcher.name, read where it proposed."""
    config = portfolio({"kind": "fake_model", "invalid": True}, {"kind": "fake_tuner"})
    researcher = PortfolioProposer(config)
    resting = "portfolio:fake_model+fake_tuner"
    assert researcher.name == resting

    def propose() -> str:
        with pytest.raises(InvalidProposal):
            researcher.propose(context(study_for(config), [Row(1, Status.KEEP, "b", metric=1)]))
        return researcher.name

    assert contextvars.copy_context().run(propose) == "fake_model"
    assert researcher.name == resting  # another context (the campaign's) never saw the draw


def test_writes_code_reads_members_and_portfolios():
    assert not proposers.writes_code("mutate") and proposers.writes_code("claude")
    assert proposers.writes_code("scripted") and proposers.writes_code("nokind:x")
    assert not proposers.writes_code("mutate:fine") and proposers.writes_code("claude:opus")
    assert not proposers.writes_code("portfolio:mutate+optuna+fake_tuner")
    assert proposers.writes_code("portfolio:claude:opus+mutate")
    assert proposers.writes_code("portfolio") and proposers.writes_code("portfolio:")
    offline = PortfolioProposer(portfolio({"kind": "mutate"}, {"kind": "fake_tuner", "name": "t"}))
    assert offline.name == "portfolio:mutate+fake_tuner:t"
    assert not proposers.writes_code(offline.name)
    assert proposers.writes_code(PortfolioProposer(portfolio(*TWO)).name)


def test_the_sandbox_decision_follows_the_members(make_study):
    offline = "proposer: {kind: portfolio, members: [{kind: mutate}, {kind: fake_tuner}]}\n"
    study = load_study(make_study(yaml_extra=offline))
    researcher = proposers.make_proposer(study, "portfolio")
    assert not runs_model_code(study, [], researcher.name)
    kept = [Row(1, Status.KEEP, "baseline"), Row(2, Status.KEEP, "x", proposer="fake_model:a")]
    assert runs_model_code(study, kept, researcher.name)  # a model's change is the champion


# the study file ----------------------------------------------------------------------------


def test_a_study_file_names_its_members(make_study):
    section = (
        "proposer:\n  kind: portfolio\n  seed: 3\n  floor: 0.2\n  tune_after_keep: optuna\n"
        "  members:\n    - {kind: claude, name: opus, model: claude-opus-4-1}\n"
        "    - {kind: claude, name: sonnet}\n    - {kind: optuna, sampler: cmaes}\n"
    )
    study = load_study(make_study(yaml_extra=section))
    config = study.config.proposer
    assert isinstance(config, PortfolioConfig) and config.floor == 0.2
    assert [m.label for m in config.members] == ["claude:opus", "claude:sonnet", "optuna"]
    assert config.members[0].config.model == "claude-opus-4-1"  # type: ignore[attr-defined]
    assert config.members[2].config.sampler == "cmaes"  # type: ignore[attr-defined]
    assert proposers.choose_kind(study) == ("portfolio", "proposer portfolio (asked for)")
    researcher = proposers.make_proposer(study, "portfolio")
    assert list(researcher.members) == ["claude:opus", "claude:sonnet", "optuna"]  # type: ignore[attr-defined]
    assert researcher.members["optuna"].seed == 3  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("members", "problem"),
    [
        ("[{kind: mutate}, {kind: nope}]", r"proposer.members.1.kind: unknown kind 'nope'"),
        ("[{kind: mutate}, {kind: optuna, sampler: x}]", r"proposer.members.1.sampler: Input"),
        ("[{kind: mutate, stepp: 1}]", r"proposer.members.0.stepp: Extra inputs"),
        ("[{kind: mutate}, {step: 1}]", r"proposer.members.1.kind: each member names its kind"),
        ("[{kind: portfolio, members: []}]", r"proposer.members.0.kind: a portfolio cannot"),
        ("[{kind: auto}]", r"proposer.members.0.kind: auto stands for another kind"),
        ("[{kind: claude}, {kind: claude}]", r"proposer.members: .*give each its own `name:`"),
        ("[{kind: mutate, name: 'a b'}]", r"proposer.members.0.name: String should match"),
        ("[]", r"proposer.members: List should have at least 1 item"),
    ],
)
def test_a_bad_member_is_named_by_its_place(make_study, members, problem):
    with pytest.raises(StudyError, match=problem):
        load_study(make_study(yaml_extra=f"proposer: {{kind: portfolio, members: {members}}}\n"))


def test_the_floor_must_fit_the_members():
    with pytest.raises(ValidationError, match="3 members cannot each have 0.4"):
        portfolio(*TWO, {"kind": "fake_tuner"}, floor=0.4)


# the report --------------------------------------------------------------------------------


def test_the_report_shows_each_proposer():
    rows = [
        Row(1, Status.KEEP, "baseline", metric=10.0, duration_s=5),
        Row(2, Status.KEEP, "a", metric=8.0, proposer="claude:opus", cost_usd=0.5, duration_s=60),
        Row(3, Status.DISCARD, "b", metric=9.0, proposer="mutate", duration_s=30),
        Row(4, Status.KEEP, "c", metric=7.0, proposer="mutate", duration_s=90),
        Row(5, Status.HOLDOUT, "holdout", metric=3.0, proposer="mutate"),
    ]
    frame = proposers_frame(rows, "minimize")
    assert list(frame["proposer"]) == ["claude:opus", "mutate"]
    opus, mutate = frame.to_dict("records")
    assert (opus["experiments"], opus["keeps"], opus["gain"], opus["gain_per_usd"]) == (
        1, 1, 2.0, 4.0
    )  # fmt: skip
    assert (mutate["experiments"], mutate["keeps"], mutate["cost_usd"]) == (2, 1, 0.0)
    assert mutate["gain"] == 1.0 and mutate["gain_per_hour"] == pytest.approx(30.0)
    assert mutate["gain_per_usd"] != mutate["gain_per_usd"]  # NaN: no dollars spent
    assert proposers_frame(rows[:1], "minimize").empty


# a campaign --------------------------------------------------------------------------------


@pytest.mark.usefixtures("prefect_server")
def test_a_campaign_of_mutate_and_optuna(make_study):
    from click.testing import CliRunner

    from autoresearch.cli import main
    from tests.conftest import campaign

    section = (
        "proposer: {kind: portfolio, seed: 0, members: [{kind: mutate}, "
        "{kind: optuna, knobs: {X: [0, 20]}}]}\n"
    )
    folder = make_study(yaml_extra=section)
    result = campaign(str(folder), experiments=6, seed=0)
    assert result.ran == 6
    study = load_study(folder)
    ledger = Ledger(study.state_dir / "results.tsv", "score")
    rows = ledger.rows()
    assert [r.proposer for r in rows[:3]] == ["-", "mutate", "optuna"]  # each its floor first
    assert {r.proposer for r in rows[1:]} == {"mutate", "optuna"}
    assert all(r.description.startswith(r.proposer) for r in rows[1:] if r.status != "invalid")
    assert result.best < result.baseline
    markdown = summary_markdown(study, ledger)
    assert "| proposer | experiments | keeps |" in markdown and "| optuna |" in markdown
    out = CliRunner().invoke(main, ["status", str(folder)])
    assert out.exit_code == 0, out.output
    assert "by proposer" in out.output and "optuna" in out.output
