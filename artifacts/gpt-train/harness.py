"""Protected: the command the evaluator runs (`python harness.py`).

It builds the model that train.py defines, gives train() the data loader and the clock, then
scores the trained model itself (prepare.evaluate_bpb) and prints Karpathy's summary block:

    ---
    val_bpb:          1.234567
    training_seconds: 20.0
    ...

Start-up, data loading and the first prepare.WARMUP_STEPS steps (torch.compile) are outside the
budget; total_seconds counts everything. Exit codes: 0 scored, 1 failed, 2 set-up problem.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import prepare as prep
    import torch

START = time.perf_counter()


def _hard_kill(limit_s: float) -> None:
    """The watchdog's end: a candidate that ignores its clock is stopped, not waited for."""
    print(f"error: hard kill: still running {limit_s:.0f} s after training began", file=sys.stderr)
    sys.stderr.flush()
    os._exit(124)


def _run() -> None:
    import prepare
    import torch

    device = prepare.pick_device()
    budget = prepare.time_budget(device)
    data, digest = prepare.load_corpus()
    train_tokens, val_tokens = prepare.split(prepare.encode(data))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    print(f"# device {device} ({name}), torch {torch.__version__}")
    print(f"# data_sha256 {digest}")
    print(f"# time_budget_s {budget:g}")

    import train

    torch.manual_seed(prepare.SEED)
    model = train.build_model(prepare.VOCAB_SIZE, prepare.EVAL_SEQ_LEN, device)
    if not isinstance(model, torch.nn.Module):
        raise prepare.HarnessError(f"build_model returned {type(model).__name__}, not a Module")
    num_params = sum(p.numel() for p in model.parameters())
    loader = prepare.TrainData(train_tokens, device)
    clock = prepare.Clock(budget, device, loader)
    limit = prepare.HARD_KILL_FACTOR * budget + prepare.HARD_KILL_GRACE_S
    watchdog = threading.Timer(limit, _hard_kill, args=(limit,))
    watchdog.daemon = True
    watchdog.start()
    began = time.perf_counter()
    clock.start()
    train.train(model, loader, clock)
    clock.check(time.perf_counter() - began)

    score = prepare.evaluate_bpb(model, val_tokens, device)
    prepare.check_causal(model, val_tokens, device)
    watchdog.cancel()
    _report(model, num_params, loader, clock, score, device)


def _report(
    model: torch.nn.Module,
    num_params: int,
    loader: prep.TrainData,
    clock: prep.Clock,
    score: prep.Score,
    device: torch.device,
) -> None:
    """Print the summary block: `name: number` lines, which the command evaluator reads."""
    import prepare

    flops_fn = getattr(model, "flops_per_token", None)
    flops_per_token = float(flops_fn()) if callable(flops_fn) else 6.0 * num_params
    tokens_per_s = clock.budgeted_tokens / clock.training_seconds if clock.training_seconds else 0
    peak = prepare.peak_flops(device)
    mfu = 100 * flops_per_token * tokens_per_s / peak if peak else 0.0
    values = {
        "val_bpb": f"{score.bpb:.6f}",
        "training_seconds": f"{clock.training_seconds:.1f}",
        "total_seconds": f"{time.perf_counter() - START:.1f}",
        "peak_vram_mb": f"{prepare.peak_memory_mb(device):.1f}",
        "mfu_percent": f"{mfu:.2f}",
        "total_tokens_M": f"{loader.tokens_served / 1e6:.1f}",
        "num_steps": f"{clock.steps}",
        "num_params_M": f"{num_params / 1e6:.1f}",
        "depth": f"{getattr(model, 'depth', 0)}",
        "warmup_seconds": f"{clock.warmup_seconds:.1f}",
        "tokens_per_s": f"{tokens_per_s:.0f}",
        "epochs": f"{loader.tokens_served / loader.num_tokens:.2f}",
        "val_bytes": f"{score.num_bytes}",
        "peak_rss_mb": f"{prepare.peak_rss_mb():.1f}",
    }
    print("\n".join(prepare.summary_lines(values)), flush=True)


def main() -> int:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    try:
        import torch  # noqa: F401
    except ImportError:
        print(
            f"error: torch is not installed for {sys.executable}; "
            "install the torch extra: pip install 'autoresearch[torch]'",
            file=sys.stderr,
        )
        return 2
    import prepare

    try:
        _run()
    except prepare.SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except prepare.HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
