"""The GPUs this machine gives us, and one for each slot (`slots: auto` in study.yaml).

A GPU is named as CUDA_VISIBLE_DEVICES names it (an index, or a UUID where our own
CUDA_VISIBLE_DEVICES gives one). They are found in `AUTORESEARCH_FAKE_GPUS` (ids separated by
commas; empty: none), else by `nvidia-smi`, else by torch when it is installed; only those our
own CUDA_VISIBLE_DEVICES lists are ours. Each slot's evaluations then see one GPU: its own.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
from collections.abc import Mapping

FAKE = "AUTORESEARCH_FAKE_GPUS"
VISIBLE = "CUDA_VISIBLE_DEVICES"


def _ids(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _nvidia_smi() -> list[str] | None:
    """The indices nvidia-smi lists; None when it is missing or fails."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index,name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return [line.split(",")[0].strip() for line in out.stdout.splitlines() if line.strip()]


def _torch(visible: list[str] | None) -> list[str]:
    """The devices torch sees (it counts only the visible ones), named as ours name them."""
    if importlib.util.find_spec("torch") is None:
        return []
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return visible[:count] if visible is not None else [str(i) for i in range(count)]


def gpus(env: Mapping[str, str] | None = None) -> list[str]:
    """The GPUs that are ours, in order: each an id for a child's CUDA_VISIBLE_DEVICES."""
    env = os.environ if env is None else env
    mine = env.get(VISIBLE)
    visible = None if mine is None else _ids(mine)
    found = _ids(env[FAKE]) if FAKE in env else _nvidia_smi()
    if found is None:  # no nvidia-smi here
        return _torch(visible)
    if visible is None:
        return found
    # a UUID cannot be checked against the indices: kept while any GPU is there at all
    return [d for d in visible if d in found or (found and not d.lstrip("-").isdigit())]


def assign(count: int, devices: list[str], share: bool = False) -> list[dict[str, str]]:
    """Each of `count` slots' environment: one GPU of its own. With fewer GPUs than slots, a
    ValueError, unless `share` (then round robin); with none at all, no GPU (the CPU)."""
    if not devices:
        return [{} for _ in range(count)]
    if len(devices) < count and not share:
        raise ValueError(
            f"parallel {count} needs {count} GPUs, found {len(devices)} "
            f"({', '.join(devices)}): lower parallel, or set `slots: {{auto: true, share: true}}`"
        )
    return [{VISIBLE: devices[i % len(devices)]} for i in range(count)]


def note(envs: list[dict[str, str]], devices: list[str]) -> str | None:
    """What a person should know of these slots' GPUs: none at all, or some shared."""
    if not devices:
        return f"no GPU found: the {len(envs)} slot(s) run on the CPU"
    held = [env.get(VISIBLE) for env in envs]
    shared = sorted({d for d in held if d is not None and held.count(d) > 1})
    if not shared:
        return None
    return (
        f"{len(envs)} slots share {len(set(held))} GPU(s) ({', '.join(shared)} held by several): "
        "their measurements contend for the device, and timings are noisier"
    )
