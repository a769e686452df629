"""Input tokens per experiment and the share read from the prompt cache, over a short campaign.

Drives ClaudeProposer (propose, then learn, as the core does each experiment) against the
loopback Messages API emulator in auto mode, on a temporary study. The emulator counts about
four characters a token and caches a prefix up to a cache breakpoint once it reaches
--min-cache-tokens (1024 for Sonnet-class models), as the real API does. Outcomes are
simulated: every --keep-every-th experiment is kept (the editable file changes, which
invalidates the files part of the cache), every --crash-every-th crashes (its log tail joins
the next prompt); the rest are discarded.

    .venv/bin/python bench/prompt_tokens.py [--experiments 10] [--keep-every 3]
    .venv/bin/python bench/prompt_tokens.py --smoke   # 4 experiments: that it still runs

Target: at least 70% of input tokens read from cache from the second experiment on; exits 1
when missed (not with --smoke: 4 experiments are too few to judge the share by).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import parse_args  # noqa: E402
from core.ledger import Row, Status  # noqa: E402
from proposers.base import Context, Outcome, Usage  # noqa: E402
from proposers.claude import ClaudeConfig, ClaudeProposer  # noqa: E402
from steps.plugins import load_study  # noqa: E402
from tests.emulators.anthropic_api import AnthropicEmulator  # noqa: E402

MODEL_PY = '''\
"""A small forecasting model: exponential smoothing with a damped trend and a seasonal term."""

from __future__ import annotations

import math

SEASON = 12
ALPHA = 0.35  # level smoothing
BETA = 0.10  # trend smoothing
GAMMA = 0.25  # seasonal smoothing
PHI = 0.95  # trend damping
WARMUP = 24
CLIP = 3.0


def initial_level(series: list[float]) -> float:
    return sum(series[:SEASON]) / SEASON


def initial_trend(series: list[float]) -> float:
    first = sum(series[:SEASON]) / SEASON
    second = sum(series[SEASON : 2 * SEASON]) / SEASON
    return (second - first) / SEASON


def initial_seasonals(series: list[float]) -> list[float]:
    level = initial_level(series)
    return [series[i] - level for i in range(SEASON)]


def clip(x: float, scale: float) -> float:
    bound = CLIP * scale
    return max(-bound, min(bound, x))


def fit(series: list[float]) -> tuple[float, float, list[float]]:
    """Run the smoother over the series; return the final level, trend and seasonals."""
    level, trend = initial_level(series), initial_trend(series)
    seasonals = initial_seasonals(series)
    scale = max(1e-9, sum(abs(x) for x in series) / len(series))
    for t, x in enumerate(series):
        s = seasonals[t % SEASON]
        prev_level = level
        level = ALPHA * (x - s) + (1 - ALPHA) * (level + PHI * trend)
        trend = BETA * (level - prev_level) + (1 - BETA) * PHI * trend
        seasonals[t % SEASON] = GAMMA * clip(x - level, scale) + (1 - GAMMA) * s
    return level, trend, seasonals


def forecast(series: list[float], horizon: int) -> list[float]:
    """Forecast `horizon` steps ahead of the series."""
    if len(series) < WARMUP:
        return [series[-1]] * horizon
    level, trend, seasonals = fit(series)
    out = []
    damp = 0.0
    for h in range(1, horizon + 1):
        damp += PHI**h
        out.append(level + damp * trend + seasonals[(len(series) + h - 1) % SEASON])
    return out


def rmse(actual: list[float], predicted: list[float]) -> float:
    return math.sqrt(sum((a - p) ** 2 for a, p in zip(actual, predicted)) / len(actual))
'''

EVALUATE_PY = '''\
"""Fixed evaluator: rolling-origin rmse of model.forecast on the held-out series."""
import json, math
from model import forecast, rmse
series = json.load(open("data.json"))
errors = [rmse(series[t:t + 6], forecast(series[:t], 6)) for t in range(48, len(series) - 6, 6)]
print(f"rmse: {sum(errors) / len(errors):.6f}")
'''

PROGRAM_MD = """\
# Research program: a better monthly demand forecast

The artifact is `model.py`, a damped-trend exponential smoother with one seasonal term, used to
forecast monthly demand six months ahead. The evaluator (`evaluate.py`, fixed) measures the
rolling-origin rmse on a held-out series; lower is better.

What to explore, roughly in this order:
1. The smoothing constants (ALPHA, BETA, GAMMA) and the trend damping PHI. They interact: a
   faster level with a slower trend is usually safer than the reverse.
2. The warm-up length and the initialisation of the level, trend and seasonal terms.
3. Robustness: the clipping of seasonal updates (CLIP) and what happens after outliers.
4. Structural changes: a multiplicative season, a second seasonal period, a bias correction.

Constraints: keep the model pure Python, with no new dependencies; keep `forecast(series,
horizon)` and `rmse(actual, predicted)` with the same signatures; a forecast must take under a
second. Prefer simple changes: a change that adds complexity must pay for itself in rmse.
Record in the learnings what each constant did, with numbers, so that we do not retry it.
"""

SMOKE = {"experiments": 4}  # a keep, a crash: each part of the prompt changes once
STUDY_YAML = """\
name: demand
editable: [model.py]
protected: [evaluate.py, data.json]
program: program.md
evaluator: {kind: command, command: "python evaluate.py", timeout_s: 60}
metric: {name: rmse, direction: minimize}
"""


@dataclass
class Turn:
    experiment: int
    status: str
    usage: Usage
    requests: int

    @property
    def prompt_tokens(self) -> int:
        u = self.usage
        return u.input_tokens + u.cache_write_tokens + u.cache_read_tokens

    @property
    def read_share(self) -> float:
        return self.usage.cache_read_tokens / self.prompt_tokens if self.prompt_tokens else 0.0


def make_study(root: Path) -> Path:
    folder = root / "demand"
    folder.mkdir(parents=True)
    for name, text in {
        "study.yaml": STUDY_YAML,
        "model.py": MODEL_PY,
        "evaluate.py": EVALUATE_PY,
        "program.md": PROGRAM_MD,
        "data.json": "[" + ", ".join(str(100 + i % 12) for i in range(120)) + "]\n",
    }.items():
        (folder / name).write_text(text)
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.org"]
    subprocess.run(git + ["init", "-q"], cwd=root, check=True)
    subprocess.run(git + ["add", "-A"], cwd=root, check=True)
    subprocess.run(git + ["commit", "-q", "-m", "baseline"], cwd=root, check=True)
    return folder


def simulate(args: argparse.Namespace, folder: Path) -> list[Turn]:
    study = load_study(folder)
    ctx = Context(
        study=study,
        program=study.program_text(),
        files={p: (study.repo_root / p).read_text() for p in study.editable},
        protected=study.protected,
        history=[
            Row(
                experiment=0,
                commit="0000000",
                metric=1.0,
                status=Status.KEEP,
                description="baseline",
            )
        ],
        learnings="",
        last_crash=None,
        experiment=1,
        workdir=study.repo_root,
    )
    rows: list[Turn] = []
    champion = 1.0
    with AnthropicEmulator(auto=True, min_cache_tokens=args.min_cache_tokens) as emu:
        config = ClaudeConfig(model=args.model, base_url=emu.url, timeout_s=30)
        proposer = ClaudeProposer(config, api_key="sk-ant-bench-dummy-key-0000")
        for n in range(1, args.experiments + 1):
            ctx.experiment = n
            before = len(emu.messages_requests)
            proposal = proposer.propose(ctx)
            ctx.tried.add(proposal.key)
            status = "discard"
            if n % args.crash_every == 0:
                status = "crash"
            elif n % args.keep_every == 0:
                status = "keep"
            metric = None if status == "crash" else champion * (0.97 if status == "keep" else 1.02)
            log_tail = "Traceback (most recent call last):\n  ...\nValueError: math domain error"
            outcome = Outcome(
                proposal,
                status,
                metric,
                champion,
                f"simulated {status}",
                log_tail if status == "crash" else "",
            )
            learned = proposer.learn(ctx, outcome)
            usage = proposal.usage + learned.usage
            rows.append(Turn(n, status, usage, len(emu.messages_requests) - before))
            ctx.learnings = learned.text or ctx.learnings
            ctx.last_crash = log_tail if status == "crash" else None
            if status == "keep":
                ctx.files = {**ctx.files, **proposal.files}
                champion = metric or champion
            ctx.history.append(
                Row(
                    experiment=n,
                    commit=f"{n:07x}",
                    metric=0.0 if metric is None else metric,
                    status=Status(status),
                    description=proposal.hypothesis,
                )
            )
    return rows


def report(rows: list[Turn]) -> float:
    print(
        f"{'exp':>3} {'status':>8} {'req':>3} {'input':>7} {'uncached':>8} {'written':>7} "
        f"{'read':>7} {'read%':>6}"
    )
    for r in rows:
        u = r.usage
        print(
            f"{r.experiment:>3} {r.status:>8} {r.requests:>3} {r.prompt_tokens:>7} "
            f"{u.input_tokens:>8} {u.cache_write_tokens:>7} {u.cache_read_tokens:>7} "
            f"{100 * r.read_share:>5.1f}%"
        )
    later = rows[1:]
    total = sum(r.prompt_tokens for r in later)
    read = sum(r.usage.cache_read_tokens for r in later)
    share = read / total if total else 0.0
    print(
        f"experiments 2-{rows[-1].experiment}: {read} of {total} input tokens read from "
        f"cache = {100 * share:.1f}% (target >= 70%)"
    )
    return share


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiments", type=int, default=10)
    parser.add_argument("--keep-every", type=int, default=3)
    parser.add_argument("--crash-every", type=int, default=4)
    parser.add_argument("--min-cache-tokens", type=int, default=1024)
    parser.add_argument("--model", default="claude-sonnet-4-6")
    args = parse_args(parser, SMOKE)
    with tempfile.TemporaryDirectory(prefix="prompt-tokens-") as tmp:
        rows = simulate(args, make_study(Path(tmp)))
    share = report(rows)
    return 0 if share >= 0.7 or args.smoke else 1


if __name__ == "__main__":
    sys.exit(main())
