"""The artifact: the researcher changes this file."""

WEIGHT = 0.5


def solve(x: float) -> float:
    return WEIGHT * x
