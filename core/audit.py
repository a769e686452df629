"""The audit of a keep (study.yaml `audit:`): rules that look at a kept change and its numbers
for progress that may not be progress.

- a change to something that decides what is measured rather than how good the artifact is: a
  seed, a time or step budget, a timeout, a data path, a read of the environment, or a line
  matching one of the study's own `sensitive` patterns;
- a jump: a gain more than `max_jump` times the largest gain kept before it.

A keep a rule doubts is re-measured at once by steps.audit (with other seeds, beside the
champion it beat) and kept only if it holds. Pure functions only.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field

SENSITIVE = {  # what a changed line touches -> its pattern
    "a seed": r"seed|random_state|rng_state",
    "a time or step budget": r"budget|max_steps|max_iters|num_steps|time_limit|deadline",
    "a timeout": r"timeout",
    "a data path": r"""['"][^'"]*(?:/|\.csv|\.json|\.jsonl|\.parquet|\.bin|\.txt)['"]""",
    "a read of the environment": r"os\.environ|getenv",
}
SHOWN = 60  # characters of a changed line quoted in the reason


class AuditConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    enabled: bool = True
    sensitive: list[str] = []  # regexes: changed lines matching one are doubted too
    max_jump: float = Field(5.0, gt=1)  # a gain over this multiple of the largest before
    remeasure_runs: int = Field(3, ge=1)  # each of the two, each with a seed of its own
    seed_env: str = Field("AUTORESEARCH_SEED", pattern=r"^[A-Z_][A-Z0-9_]*$")

    def patterns(self) -> dict[str, re.Pattern[str]]:
        found = {what: re.compile(p, re.IGNORECASE) for what, p in SENSITIVE.items()}
        for p in self.sensitive:
            found[f"the study's sensitive `{p}`"] = re.compile(p)
        return found


def changed_lines(diff: str) -> list[str]:
    """The lines a unified diff adds or removes (not its file headers)."""
    return [
        line[1:].strip()
        for line in diff.splitlines()
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]


def sensitive(diff: str, config: AuditConfig) -> list[str]:
    """What the change touches that decides what is measured: one reason per kind."""
    reasons = []
    lines = changed_lines(diff)
    for what, pattern in config.patterns().items():
        hit = next((line for line in lines if pattern.search(line)), None)
        if hit is not None:
            reasons.append(f"changes {what} (`{hit[:SHOWN]}`)")
    return reasons


def jump(gain: float, earlier: list[float], config: AuditConfig) -> str | None:
    """The gain, when it is implausibly larger than every gain kept before it."""
    largest = max(earlier, default=0.0)
    if largest > 0 and gain > config.max_jump * largest:
        return f"jumps {gain / largest:.1f}x the largest gain before it ({largest:.6g})"
    return None
