"""The forecasting formula: the one file of this study that candidates may change.

Additive Holt-Winters with a damped trend. The constants below are the knobs: how fast the level,
the trend and the seasonal profile follow new readings, and how quickly the trend is damped over
the forecast horizon. evaluate.py calls predict() once per forecast origin with the history up to
that origin only, and scores the returned values against what happened next.
"""

from __future__ import annotations

from collections.abc import Sequence

ALPHA = 0.9  # level smoothing: weight of the newest reading in the level
BETA = 0.3  # trend smoothing: weight of the newest level change in the trend
GAMMA = 0.05  # seasonal smoothing: weight of the newest deviation in its month's profile
PHI = 0.8  # trend damping: the trend's weight decays as PHI**h over the horizon
SEASON = 12  # readings per seasonal cycle (months per year)


def _mix(new: float, old: float, weight: float) -> float:
    """Exponential smoothing step: move from the old value towards the new one by weight."""
    return old + weight * (new - old)


def _initial_state(y: list[float], m: int) -> tuple[float, float, list[float]]:
    """Level, trend and seasonal profile from the first two cycles."""
    first = sum(y[:m]) / m
    second = sum(y[m : m + m]) / m
    trend = (second - first) / m
    seasonal = [v - first for v in y[:m]]
    return first, trend, seasonal


def predict(history: Sequence[float], horizon: int) -> list[float]:
    """Forecast the next `horizon` values after `history` (oldest first)."""
    y = [float(v) for v in history]
    m = int(round(SEASON))
    level, trend, seasonal = _initial_state(y, m)
    for t in range(m, len(y)):
        s = seasonal[t % m]
        previous = level
        level = _mix(y[t] - s, level + PHI * trend, ALPHA)
        trend = _mix(level - previous, PHI * trend, BETA)
        seasonal[t % m] = _mix(y[t] - level, s, GAMMA)
    out = []
    power = damped = PHI  # damped: PHI + PHI**2 + ... + PHI**h for step h
    for step in range(horizon):
        out.append(level + damped * trend + seasonal[(len(y) + step) % m])
        power *= PHI
        damped += power
    return out
