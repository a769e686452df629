"""Protected: the command the evaluator runs (`python harness.py`).

Two processes. This one (the evaluator's) never imports train.py: it checks the data, picks the
device and budget, writes the inputs to score into a temporary folder and starts a child,
`python harness.py --child DIR` (see evaluators/isolate.py: own process group, output
re-printed behind `| `, killed with everything it started when it ends). The child builds the
model that train.py defines, gives train() the data loader and the clock, then writes the
model's float32 logits on the validation windows and on the causality probes, and its training
figures, to DIR. This process then computes val_bpb from those logits against targets it cut
itself, checks the probes (causal, deterministic in eval mode), and prints Karpathy's summary
block last:

    ---
    val_bpb:          1.234567
    training_seconds: 20.0
    ...

Start-up, data loading and the first prepare.WARMUP_STEPS steps (torch.compile) are outside the
budget; total_seconds counts everything. The child exits by itself at 2 x TIME_BUDGET_S + 60 s
after training starts; this process kills it 30 s later at the latest. Exit codes: 0 scored,
1 failed, 2 set-up problem, 124 hard kill.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from evaluators.isolate import ResultError, open_result, run_child

if TYPE_CHECKING:
    import prepare as prep
    import torch

START = time.perf_counter()
HERE = Path(__file__).resolve().parent
CHILD_STARTUP_S = 30.0  # added to the child's own hard-kill limit: imports, data, model
REQUEST, INPUTS, RESULT = "request.json", "inputs.pt", "result.json"
VAL_LOGITS, PROBE_LOGITS = "val_logits.f32", "probe_logits.f32"
FIGURES = (  # what the child reports about its training, all numbers
    "training_seconds",
    "warmup_seconds",
    "steps",
    "budgeted_tokens",
    "tokens_served",
    "num_tokens",
    "num_params",
    "depth",
    "flops_per_token",
    "peak_vram_mb",
)


# The child: runs train.py and writes raw outputs --------------------------------------------


def _hard_kill(limit_s: float) -> None:
    """The watchdog's end: a candidate that ignores its clock is stopped, not waited for."""
    print(f"error: hard kill: still running {limit_s:.0f} s after training began", file=sys.stderr)
    sys.stderr.flush()
    os._exit(124)


def _write_logits(path: Path, logits: Iterator[torch.Tensor]) -> None:
    with path.open("wb") as handle:
        for chunk in logits:
            handle.write(memoryview(chunk.cpu().contiguous().numpy().astype("<f4", copy=False)))


def _child(folder: Path) -> None:
    import prepare
    import torch

    request = json.loads((folder / REQUEST).read_text())
    device, budget = torch.device(request["device"]), float(request["budget"])
    inputs = torch.load(folder / INPUTS, weights_only=True)
    data, _ = prepare.load_corpus()
    train_tokens, _ = prepare.split(prepare.encode(data))
    print(f"# device {device} ({prepare.device_name(device)}), torch {torch.__version__}")

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

    model.eval()
    with torch.inference_mode():
        val, batch = inputs["val"], prepare.EVAL_BATCH
        chunks = (val[i : i + batch] for i in range(0, len(val), batch))
        _write_logits(folder / VAL_LOGITS, (prepare.model_logits(model, x, device) for x in chunks))
        probes = (prepare.model_logits(model, p[None], device) for p in inputs["probes"])
        _write_logits(folder / PROBE_LOGITS, probes)
    watchdog.cancel()
    flops_fn = getattr(model, "flops_per_token", None)
    figures = {
        "training_seconds": clock.training_seconds,
        "warmup_seconds": clock.warmup_seconds,
        "steps": clock.steps,
        "budgeted_tokens": clock.budgeted_tokens,
        "tokens_served": loader.tokens_served,
        "num_tokens": loader.num_tokens,
        "num_params": num_params,
        "depth": getattr(model, "depth", 0),
        "flops_per_token": float(flops_fn()) if callable(flops_fn) else 6.0 * num_params,
        "peak_vram_mb": prepare.peak_memory_mb(device),
        "device_name": prepare.device_name(device),
    }
    (folder / RESULT).write_text(json.dumps(figures))


# This process: prepares the inputs, reads the outputs, scores --------------------------------


def _read_figures(folder: Path) -> dict[str, float | str]:
    """The child's training figures: every one a finite, non-negative number."""
    with open_result(folder / RESULT, 100_000) as handle:
        try:
            raw = json.loads(handle.read())
        except ValueError as exc:
            raise ResultError(f"{RESULT}: not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ResultError(f"{RESULT}: expected a JSON object")
    figures: dict[str, float | str] = {"device_name": str(raw.get("device_name", ""))[:100]}
    for name in FIGURES:
        value = raw.get(name)
        ok = type(value) in (int, float) and math.isfinite(value) and value >= 0
        if not ok:
            raise ResultError(f"{RESULT}: {name} is {value!r}, not a finite number >= 0")
        figures[name] = float(value)
    return figures


def _read_logits(folder: Path, name: str, rows: int, chunk: int) -> Iterator[torch.Tensor]:
    """float32 logits of `rows` windows from the child's file, `chunk` windows at a time."""
    import numpy as np
    import prepare
    import torch

    row_bytes = prepare.EVAL_SEQ_LEN * prepare.VOCAB_SIZE * 4
    with open_result(folder / name, rows * row_bytes) as handle:
        size = os.fstat(handle.fileno()).st_size
        if size != rows * row_bytes:
            raise ResultError(
                f"{name}: {size} bytes, expected {rows * row_bytes} "
                f"(float32 logits of shape ({rows}, {prepare.EVAL_SEQ_LEN}, "
                f"{prepare.VOCAB_SIZE}))"
            )
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            buf = bytearray(n * row_bytes)
            if handle.readinto(buf) != len(buf):
                raise ResultError(f"{name}: shorter than it was a moment ago")
            shape = (n, prepare.EVAL_SEQ_LEN, prepare.VOCAB_SIZE)
            yield torch.from_numpy(np.frombuffer(buf, dtype="<f4").reshape(shape))


def _report(score: prep.Score, figures: dict[str, float | str], device_type: str) -> None:
    """Print the summary block: `name: number` lines, which the command evaluator reads."""
    import prepare

    secs, served = float(figures["training_seconds"]), float(figures["tokens_served"])
    tokens_per_s = float(figures["budgeted_tokens"]) / secs if secs else 0.0
    peak = prepare.peak_flops(device_type, str(figures["device_name"]))
    mfu = 100 * float(figures["flops_per_token"]) * tokens_per_s / peak if peak else 0.0
    num_tokens = float(figures["num_tokens"])
    values = {
        "val_bpb": f"{score.bpb:.6f}",
        "training_seconds": f"{secs:.1f}",
        "total_seconds": f"{time.perf_counter() - START:.1f}",
        "peak_vram_mb": f"{float(figures['peak_vram_mb']):.1f}",
        "mfu_percent": f"{mfu:.2f}",
        "total_tokens_M": f"{served / 1e6:.1f}",
        "num_steps": f"{int(figures['steps'])}",
        "num_params_M": f"{float(figures['num_params']) / 1e6:.1f}",
        "depth": f"{int(figures['depth'])}",
        "warmup_seconds": f"{float(figures['warmup_seconds']):.1f}",
        "tokens_per_s": f"{tokens_per_s:.0f}",
        "epochs": f"{served / num_tokens if num_tokens else 0.0:.2f}",
        "val_bytes": f"{score.num_bytes}",
        "peak_rss_mb": f"{max(prepare.peak_rss_mb(), prepare.peak_rss_mb(children=True)):.1f}",
    }
    print("\n" + "\n".join(prepare.summary_lines(values)), flush=True)


def _run() -> int:
    import prepare
    import torch

    device = prepare.pick_device()
    budget = prepare.time_budget(device)
    data, digest = prepare.load_corpus()
    _, val_tokens = prepare.split(prepare.encode(data))
    x, y = prepare.windows(val_tokens)
    probes = prepare.causal_probes(val_tokens)
    print(f"# device {device}, torch {torch.__version__}")
    print(f"# data_sha256 {digest}")
    print(f"# time_budget_s {budget:g}")
    limit = prepare.HARD_KILL_FACTOR * budget + prepare.HARD_KILL_GRACE_S + CHILD_STARTUP_S
    with tempfile.TemporaryDirectory(prefix="gpt-train-") as tmp:
        folder = Path(tmp)
        (folder / REQUEST).write_text(json.dumps({"device": str(device), "budget": budget}))
        torch.save({"val": x, "probes": probes}, folder / INPUTS)
        code = run_child([sys.executable, str(HERE / "harness.py"), "--child", tmp], HERE, limit)
        if code is None:
            print(f"error: hard kill: the training process ran past {limit:.0f} s", file=sys.stderr)
            return 124
        if code != 0:
            print(f"error: the training process failed with exit code {code}", file=sys.stderr)
            return code if code in (1, 2, 124) else 1
        figures = _read_figures(folder)
        chunks = _read_logits(folder, VAL_LOGITS, len(x), prepare.EVAL_BATCH)
        score = prepare.score_logits(chunks, y)
        prepare.check_probes(torch.cat(list(_read_logits(folder, PROBE_LOGITS, len(probes), 1))))
    _report(score, figures, device.type)
    return 0


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

    child = len(sys.argv) == 3 and sys.argv[1] == "--child"
    try:
        if child:
            _child(Path(sys.argv[2]))
            return 0
        return _run()
    except prepare.SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (prepare.HarnessError, ResultError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
