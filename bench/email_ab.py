"""How the cold-email A/B decision behaves: false keeps, power and days to a decision.

Run: .venv/bin/python bench/email_ab.py [--reps N] [--seed S] [--e2e K]   (about 30 s)
     .venv/bin/python bench/email_ab.py --smoke   (20 A/A runs, 1 end to end: that it runs)

Each simulated A/B test follows the campaign's timeline on the study's own settings
(artifacts/cold-email/study.yaml): 2 x batch_per_arm sends, champion and challenger
interleaved, at most daily_cap a day (the next day's sends go when the cap frees, 24 h and a
second later, as the evaluator's due_at says); a reply counts when it comes within window_h of
its send, with the delays of the study's audience model (audience.py); bounces leave the
denominator. The counts change only at the look times (core.abtest.as_of: every look_every_h,
and the window's close), and each look is decided by core.abtest.interim, the function the
campaign calls, with the study's decision rule. Rates are drawn per message (binomial), at the
audience's bounce rate.

Rows: A/A (both arms 3%: every keep is a false keep), 3% -> 4.5% (power), 3% -> 2.25% (a worse
copy: how fast it is dropped), and, for contrast, A/A decided naively (keep at the first look
where P(better) >= the final bar).

`--e2e K` then runs K A/A tests (the bundled copy against itself) end to end through the real
evaluator offline (evaluators.sendgrid: plan, sends under the cap, the simulated audience, the
mail store, collect), `max_pending` at a time sharing the daily cap as a campaign would run
them, and reports the days from launch to decision, the queue for the cap included.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import math
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import parse_args  # noqa: E402
from core.abtest import PEEKING, Peeking, as_of, interim  # noqa: E402
from core.rules.base import Rule  # noqa: E402
from email_ab.audience import Model, load_model  # noqa: E402
from email_ab.sendgrid import SendGridConfig, SendGridEvaluator  # noqa: E402
from evaluators.base import Launch, from_iso  # noqa: E402
from steps.plugins import load_study  # noqa: E402

STUDY = ROOT / "artifacts" / "cold-email"
DAY_S = 86400.0 + 1.0  # the cap frees 24 h after the first send of a day, plus a second
SMOKE = {"reps": 20, "e2e": 1}


@dataclass(frozen=True)
class Plan:
    per_arm: int
    cap: int
    window_s: float
    look_h: float
    max_wait_h: float
    rule: Rule  # the study's: beta_binomial
    delay: tuple[float, float]  # reply delay: median hours, sigma
    bounce: float


def simulate(rng: np.random.Generator, plan: Plan, p_h: float, p_c: float, peeking: Peeking):
    """One A/B test: (status, days to the decision, early?)."""
    n = plan.per_arm
    arm = np.repeat([[0, 1]], n, axis=0)
    flip = rng.random(n) < 0.5
    arm[flip] = arm[flip][:, ::-1]
    arm = arm.ravel()  # pairs, in a random order within each pair
    sent = (np.arange(2 * n) // plan.cap) * DAY_S
    bounced = rng.random(2 * n) < plan.bounce
    replied = (rng.random(2 * n) < np.where(arm == 0, p_h, p_c)) & ~bounced
    median_h, sigma = plan.delay
    delay = median_h * 3600.0 * np.exp(sigma * rng.standard_normal(2 * n))
    counted = replied & (delay <= plan.window_s)
    arms = [
        (np.sort(sent[(arm == a) & ~bounced]), np.sort((sent + delay)[(arm == a) & counted]))
        for a in (0, 1)
    ]
    close = sent.max() + plan.window_s
    t = 0.0
    while True:
        t = min(t + plan.look_h * 3600.0, close)
        look = as_of(t, 0.0, plan.look_h, close)
        counts = [
            (int(np.searchsorted(r, look, "right")), int(np.searchsorted(s, look, "right")))
            for s, r in arms
        ]
        d = interim(
            plan.rule,
            counts[0],
            counts[1],
            closed=t >= close,
            waited_h=t / 3600.0,
            max_wait_h=plan.max_wait_h,
            planned=n,
            peeking=peeking,
        )
        if d is not None:
            return d.status, t / 86400.0, not d.final


def wilson(k: int, n: int) -> tuple[float, float]:
    z = 1.96
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def row(name: str, results: list[tuple[str, float, bool]]) -> str:
    n = len(results)
    keeps = sum(s == "keep" for s, _, _ in results)
    lo, hi = wilson(keeps, n)
    early = sum(e for _, _, e in results) / n
    days = np.array([d for _, d, _ in results])
    return (
        f"{name:<34}{n:>6}{keeps / n:>9.1%}   [{lo:5.1%}, {hi:5.1%}]{early:>8.0%}"
        f"{np.median(days):>10.1f}{np.percentile(days, 90):>9.1f}"
    )


def baseline_rate(model: Model, cfg: SendGridConfig, sample: int = 4000) -> tuple[float, float]:
    """The bundled copy's mean reply rate and the bounce rate on the simulated audience."""
    raw = gzip.decompress((STUDY / cfg.prospects).read_bytes()).decode()
    rows = list(csv.DictReader(io.StringIO(raw)))[:sample]
    subject = (STUDY / cfg.subject).read_text().strip()
    body = (STUDY / cfg.body).read_text()
    rates = [model.rates(subject.format_map(p), body.format_map(p), p) for p in rows]
    return float(np.mean([r["reply"] for r in rates])), float(np.mean([r["bounce"] for r in rates]))


def end_to_end(cfg: SendGridConfig, rule: Rule, tests: int) -> list[tuple[str, float]]:
    """A/A tests through the real evaluator, offline, max_pending at a time, launched as soon
    as a slot frees (the campaign's loop): (status, days from launch to decision) each."""
    tmp = Path(tempfile.mkdtemp(prefix="email-ab-"))
    try:
        folder = tmp / "study"
        shutil.copytree(STUDY, folder, ignore=shutil.ignore_patterns("runs", "__pycache__"))
        state = tmp / "state"
        ev = SendGridEvaluator(cfg.model_copy(update={"mode": "simulate"}), "reply_rate")
        pending: dict[int, dict] = {}
        done: list[tuple[str, float]] = []
        launched = 0
        while len(done) < tests:
            while len(pending) < cfg.max_pending and launched < tests:
                launched += 1
                handle = ev.launch(Launch("cold-email", launched, folder, folder, state))
                ev.start(handle, state)
                pending[launched] = handle
            dues, decided = [], False
            for n, handle in sorted(pending.items()):  # oldest first: it has the cap first
                ev.start(handle, state)
                c = ev.collect(handle, state)
                d = interim(
                    rule,
                    c.arms["champion"],
                    c.arms["challenger"],
                    closed=c.closed,
                    waited_h=ev.waited_h(handle, state),
                    max_wait_h=cfg.max_wait_h,
                    planned=cfg.batch_per_arm,
                )
                if d is None:
                    dues.append(c.due_at)
                    continue
                ev.finish(handle, state, d.ledger_status)
                done.append((d.status, ev.waited_h(handle, state) / 24.0))
                del pending[n]
                decided = True
            if dues and not (decided and launched < tests):  # nothing to do until then
                ev.wait_until(min(dues, key=from_iso), state)
        ev.close()
        return done
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2000, help="A/A runs (power: half)")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--e2e", type=int, default=6, help="A/A tests through the evaluator")
    return parse_args(parser, SMOKE)


def main() -> None:
    args = arguments()
    started = time.time()
    study = load_study(STUDY)
    cfg = study.config.evaluator
    assert isinstance(cfg, SendGridConfig)
    model = load_model((STUDY / cfg.audience).read_text(), str(STUDY / cfg.audience))
    base, bounce = baseline_rate(model, cfg)
    plan = Plan(
        cfg.batch_per_arm,
        cfg.daily_cap,
        cfg.window_h * 3600.0,
        cfg.look_every_h,
        cfg.max_wait_h,
        study.rule,
        model.delays_h["reply"],
        bounce,
    )
    rule = plan.rule
    print(
        f"cold-email A/B decisions: {plan.per_arm} sends per arm, daily cap {plan.cap}, window "
        f"{cfg.window_h:g} h, a look every {plan.look_h:g} h, max_wait_h {plan.max_wait_h:g}\n"
        f"final: P(better) >= {rule.config.probability:g} and expected loss < "
        f"{rule.config.max_expected_loss:g}; early: keep at P >= {PEEKING.keep_probability:g}, "
        f"discard at P < {PEEKING.futility_probability:g}, after {PEEKING.min_fraction:.0%} "
        f"of the sends\naudience: reply delay lognormal median {plan.delay[0]:g} h sigma "
        f"{plan.delay[1]:g}; bounces {bounce:.1%}; the bundled copy earns {base:.2%}\n"
    )
    print(f"{'scenario':<34}{'runs':>6}{'keeps':>9}   {'95% CI':<16}{'early':>6}"
          f"{'median d':>10}{'p90 d':>9}")  # fmt: skip
    rng = np.random.default_rng(args.seed)
    naive = Peeking(rule.config.probability, 0.0, 0.0)
    scenarios = [
        ("A/A 3% vs 3% (false keeps)", 0.03, 0.03, args.reps, PEEKING),
        ("3% -> 4.5% (power)", 0.03, 0.045, args.reps // 2, PEEKING),
        ("3% -> 2.25% (a worse copy)", 0.03, 0.0225, args.reps // 4, PEEKING),
        ("A/A, naive peeking (contrast)", 0.03, 0.03, args.reps // 2, naive),
    ]
    for name, p_h, p_c, reps, peeking in scenarios:
        results = [simulate(rng, plan, p_h, p_c, peeking) for _ in range(reps)]
        print(row(name, results), flush=True)
    if args.e2e:
        t = time.time()
        results = end_to_end(cfg, rule, args.e2e)
        days = [d for _, d in results]
        statuses = ", ".join(f"{s} {d:.1f} d" for s, d in results)
        print(
            f"\nend to end, {args.e2e} A/A tests through the evaluator offline, "
            f"{cfg.max_pending} at a time on one daily cap ({time.time() - t:.0f} s):\n"
            f"  median {np.median(days):.1f} days from launch to decision, max {max(days):.1f}; "
            f"{statuses}"
        )
    print(f"\n({time.time() - started:.0f} s; seed {args.seed})")


if __name__ == "__main__":
    main()
