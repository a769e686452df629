"""Protected: the gpu-kernel study's harness. Correct first, then fast.

kernel.py (editable) runs in a child process (`--child`, see evaluators/isolate.py), which calls
`rmsnorm(x, weight, eps)` on every case of the correctness stages and saves what it returned.
This process never imports kernel.py: it makes the same inputs from the same seeds, computes the
reference with PyTorch itself after the child has exited, and compares (torch.testing's
tolerances for each dtype; NaN where the reference has NaN). The stages, in order:

1. shapes: one row, one column, odd and non-power-of-two sizes, a row longer than a block;
2. dtypes: float32, float16, bfloat16;
3. special values: a row of zeros, large magnitudes, a NaN and an inf (they propagate as in
   the reference, in their row only);
4. determinism: the same input twice gives the same bits;
5. reference: random inputs at larger sizes.

The first failing stage and case are named (exit 1). Then, on a CUDA GPU, the kernel is timed on
an LLM-sized input (8192 x 4096 bfloat16) with CUDA events after warm-up; its output there is
checked too. The metric is the achieved bandwidth, `gbps` (RMSNorm reads x and the weight and
writes y: it is memory-bound), with `roofline_pct` (the share of the device's peak bandwidth,
from the table below), `kernel_us` and `peak_vram_mb`. The study's rule (mannwhitney) runs the
candidate and the champion interleaved.

Without a CUDA GPU, the stages run through Triton's interpreter (TRITON_INTERPRET=1) on smaller
sizes, so the gate is tested anywhere, and timing fails with "needs a CUDA GPU"; `--gate` stops
after the gate (exit 0 when it passes).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from evaluators.isolate import ResultError, open_result, run_child

HERE = Path(__file__).resolve().parent
EPS = 1e-6
TIMED = (8192, 4096)  # rows (tokens) x cols (hidden), bfloat16
WARMUP, ITERATIONS = 10, 50
CHILD_TIMEOUT_S = 300.0
MAX_RESULT_BYTES = 256 * 2**20
TOLERANCE = {  # (rtol, atol) against a float32 reference cast to the dtype
    torch.float32: (1e-5, 1e-5),
    torch.float16: (1e-2, 1e-2),
    torch.bfloat16: (2e-2, 2e-2),
}
PEAK_GBPS = {  # memory bandwidth by device name (a substring of torch's name for it)
    "H200": 4800,
    "H100 SXM": 3350,
    "H100 PCIe": 2000,
    "H100": 3350,
    "A100-SXM4-80GB": 2039,
    "A100": 1555,
    "L40S": 864,
    "L4": 300,
    "A10G": 600,
    "RTX 4090": 1008,
    "RTX 3090": 936,
}
F32, F16, BF16 = torch.float32, torch.float16, torch.bfloat16


@dataclass(frozen=True)
class Case:
    stage: str
    what: str
    rows: int
    cols: int
    dtype: torch.dtype
    special: str = ""  # zeros | large | nan | inf
    twice: bool = False  # determinism: run twice, compare the bits

    def inputs(self, seed: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(self.rows, self.cols, generator=g)
        w = torch.rand(self.cols, generator=g) + 0.5
        if self.special == "zeros":
            x[0] = 0.0
        elif self.special == "large":
            x *= 3e4 if self.dtype is F16 else 1e6
        elif self.special in ("nan", "inf"):
            x[0, self.cols // 2] = float(self.special)
        return x.to(self.dtype).to(device), w.to(self.dtype).to(device)

    def describe(self) -> str:
        name = str(self.dtype).removeprefix("torch.")
        return f"{self.what} ({self.rows}x{self.cols} {name})"


def cases(gpu: bool) -> list[Case]:
    """The correctness stages, in order (smaller sizes through the interpreter)."""
    big = (4, 5000) if gpu else (2, 300)
    ref = [(64, 768), (128, 4096), (1000, 1536)] if gpu else [(16, 96), (5, 130)]
    return [
        *(Case("shapes", f"{r}x{c}", r, c, F32) for r, c in [(1, 1), (1, 7), (3, 33), (8, 128)]),
        Case("shapes", "a row longer than a block", *big, F32),
        *(Case("dtypes", str(d).removeprefix("torch."), 16, 256, d) for d in (F32, F16, BF16)),
        Case("special values", "a row of zeros", 4, 64, F32, "zeros"),
        Case("special values", "large magnitudes", 4, 64, F32, "large"),
        Case("special values", "large float16", 4, 64, F16, "large"),
        Case("special values", "a NaN", 4, 64, F32, "nan"),
        Case("special values", "an inf", 4, 64, F32, "inf"),
        Case("determinism", "the same input twice", 32, 512, F32, twice=True),
        *(Case("reference", f"random {r}x{c}", r, c, BF16) for r, c in ref),
    ]


def reference(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    f = x.float()
    return (f * torch.rsqrt(f.pow(2).mean(-1, keepdim=True) + EPS) * w.float()).to(x.dtype)


# the child: imports kernel.py, saves what it returns --------------------------------------


def child(folder: Path, gpu: bool, timed: bool) -> None:
    """Run the candidate on every case (and time it): only files come out, read by the parent."""
    event, synchronize = torch.cuda.Event, torch.cuda.synchronize  # before the candidate runs
    warnings.filterwarnings("ignore", category=RuntimeWarning)  # the interpreter's inf * 0
    sys.path.insert(0, str(HERE))
    import kernel

    device = "cuda" if gpu else "cpu"
    for i, case in enumerate(cases(gpu)):
        x, w = case.inputs(i, device)
        outputs = [kernel.rmsnorm(x, w, EPS) for _ in range(2 if case.twice else 1)]
        torch.save([y.cpu() for y in outputs], folder / f"case-{i}.pt")
    if timed:
        times, y = _time(kernel.rmsnorm, event)
        if (torch.cuda.Event, torch.cuda.synchronize) != (event, synchronize):
            raise SystemExit("the CUDA timing functions were replaced")
        peak = torch.cuda.max_memory_allocated() / 2**20
        (folder / "times.json").write_text(json.dumps({"ms": times, "peak_vram_mb": peak}))
        torch.save(y[:256].cpu(), folder / "timed.pt")


def _time(rmsnorm: object, event: type) -> tuple[list[float], torch.Tensor]:
    x, w = Case("timing", "", *TIMED, BF16).inputs(10_000, "cuda")
    for _ in range(WARMUP):
        y = rmsnorm(x, w, EPS)  # type: ignore[operator]
    times = []
    for _ in range(ITERATIONS):
        start, end = event(enable_timing=True), event(enable_timing=True)
        start.record()
        y = rmsnorm(x, w, EPS)  # type: ignore[operator]
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return times, y


# the parent: compares, computes the metric ---------------------------------------------------


class Failed(Exception):
    """A stage failed: the message names it and the case."""


def load(path: Path) -> object:
    with open_result(path, MAX_RESULT_BYTES) as handle:
        try:
            return torch.load(handle, weights_only=True)
        except Exception as exc:  # noqa: BLE001 - whatever the child wrote, named
            raise ResultError(f"{path.name}: not tensors: {exc}") from None


def check(folder: Path, gpu: bool) -> int:
    """Every case against the reference, in order; the number of cases checked."""
    found = cases(gpu)
    for i, case in enumerate(found):
        where = f"stage {case.stage}, case {case.describe()}"
        path = folder / f"case-{i}.pt"
        if not path.exists():
            raise Failed(f"{where}: the kernel failed (see its output above)")
        outputs = load(path)
        if not isinstance(outputs, list) or not all(isinstance(y, torch.Tensor) for y in outputs):
            raise Failed(f"{where}: the child saved no tensors")
        x, w = case.inputs(i, "cpu")
        _compare(where, outputs[0], reference(x, w), case.dtype)
        if case.twice and not torch.equal(outputs[0], outputs[1]):
            raise Failed(f"{where}: two runs on the same input differ")
    return len(found)


def _compare(where: str, got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype) -> None:
    if got.shape != want.shape or got.dtype != want.dtype:
        raise Failed(f"{where}: returned {tuple(got.shape)} {got.dtype}, expected "
                     f"{tuple(want.shape)} {want.dtype}")  # fmt: skip
    rtol, atol = TOLERANCE[dtype]
    try:
        torch.testing.assert_close(got, want, rtol=rtol, atol=atol, equal_nan=True)
    except AssertionError as exc:
        raise Failed(f"{where}: {' '.join(str(exc).split()[:40])}") from None


def bandwidth(ms: float, rows: int, cols: int, size: int) -> float:
    """GB/s: x and y once each, the weight once."""
    return (2 * rows * cols + cols) * size / (ms / 1e3) / 1e9


def peak_gbps(name: str) -> float | None:
    return next((v for k, v in PEAK_GBPS.items() if k in name), None)


def report(folder: Path) -> None:
    """The timed figures, after the timed output is checked too."""
    raw = json.loads((folder / "times.json").read_text())
    x, w = Case("timing", "", *TIMED, BF16).inputs(10_000, "cuda")
    _compare("the timed input", load(folder / "timed.pt"), reference(x, w)[:256].cpu(), BF16)
    ms = statistics.median(raw["ms"])
    gbps = bandwidth(ms, *TIMED, 2)
    name = torch.cuda.get_device_name()
    print(f"# gpu {name}")
    print(f"kernel_us: {ms * 1e3:.2f}")
    if (peak := peak_gbps(name)) is not None:
        print(f"roofline_pct: {100 * gbps / peak:.1f}")
    print(f"peak_vram_mb: {raw['peak_vram_mb']:.1f}")
    print(f"gbps: {gbps:.2f}")


def evaluate(gate_only: bool) -> int:
    gpu = torch.cuda.is_available()
    if not gpu:
        os.environ["TRITON_INTERPRET"] = "1"  # the child's Triton runs kernels on the CPU
    timed = gpu and not gate_only
    with tempfile.TemporaryDirectory(prefix="gpu-kernel-") as tmp:
        folder = Path(tmp)
        argv = [sys.executable, str(HERE / "harness.py"), "--child", tmp]
        code = run_child(argv + (["--timed"] if timed else []), HERE, CHILD_TIMEOUT_S)
        try:
            checked = check(folder, gpu)
            if code != 0:
                raise Failed(f"the kernel process exited with {code}")
            mode = "on the GPU" if gpu else "through Triton's interpreter"
            print(f"gate: {checked} cases passed {mode}")
            print(f"gate_cases: {checked}")
            if timed:
                report(folder)
        except (Failed, ResultError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    if not gpu and not gate_only:
        print("error: timing needs a CUDA GPU (the gate passed through Triton's interpreter)",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gate", action="store_true", help="the correctness stages only")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--timed", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, torch.cuda.is_available(), args.timed)
        return 0
    return evaluate(args.gate)


if __name__ == "__main__":
    sys.exit(main())
