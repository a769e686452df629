"""The GPU studies, proven on a GPU in about 8 minutes: gpt-train's baseline at its CUDA
configuration with a shortened budget, and a short gpu-kernel campaign with a scripted proposer.

1. gpt-train: the bundled study's harness, once, with TIME_BUDGET_S=--budget (Karpathy's depth,
   width, sequence length and batch; 300 s in the study): val_bpb, MFU, tokens a second, peak
   VRAM. Target: MFU at least 40% on an H100-class GPU (Karpathy's 39.8%).
2. gpu-kernel: a campaign of the experiment flow (git, the sandbox, a Prefect server) whose
   proposer hands over, in turn, a real speed-up (one pass, the row in registers, more warps)
   and a faster but wrong kernel (the mean over the block, not the row), the study's rule being
   mannwhitney over `--repeats` interleaved runs. Target: the speed-up kept, the wrong kernel
   refused by the gate (screened, naming its stage and case).

Without a CUDA GPU both need one: it says so, and (as `--smoke` does) runs each kernel through
the gate alone, on Triton's interpreter.

    .venv/bin/python bench/gpu.py [--budget 90] [--repeats 3]
    .venv/bin/python bench/gpu.py --smoke
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the bench package, run as a script
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")

from bench._common import parse_args, prefect_server  # noqa: E402
from evaluators.base import Measurement  # noqa: E402
from evaluators.command import CommandConfig, CommandEvaluator  # noqa: E402
from proposers.base import Context, Learned, Outcome, Proposal  # noqa: E402

SMOKE = {"budget": 5.0, "repeats": 2}
ARTIFACTS = ROOT / "artifacts"
GIT = os.environ | {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@localhost",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@localhost",
}

# The scripted kernels, as changes of the bundled kernel.py (tests/test_gpu_kernel.py uses them).
ONE_PASS = """

@triton.jit
def _one_pass(x_ptr, w_ptr, y_ptr, n_cols, eps, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    start = row.to(tl.int64) * n_cols
    x = tl.load(x_ptr + start + cols, mask=mask, other=0.0).to(tl.float32)
    scale = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / n_cols + eps)
    w = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(y_ptr + start + cols, (x * scale * w).to(y_ptr.dtype.element_ty), mask=mask)


def rmsnorm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    y = torch.empty_like(x)
    rows, cols = x.shape
    block = triton.next_power_of_2(cols)
    warps = min(16, max(1, block // 256))
    _one_pass[(rows,)](x, weight, y, cols, eps, BLOCK=block, num_warps=warps)
    return y
"""
# fast and wrong: the mean over the block, not over the row (right only when they are equal)
OVER_THE_BLOCK = ("tl.sum(total, axis=0) / n_cols", "tl.sum(total, axis=0) / BLOCK")


def kernels(plain: str) -> dict[str, str]:
    """The scripted proposals: kernel.py's new text, by what it is."""
    wrong = plain.replace(*OVER_THE_BLOCK).replace("BLOCK = 64", "BLOCK = 4096")
    return {"one pass (a real speed-up)": plain + ONE_PASS, "mean over the block (wrong)": wrong}


def copy(name: str, root: Path, repeats: int) -> Path:
    """A bundled study in a fresh git repository (its rule's repeats set for a short run)."""
    folder = root / name
    shutil.copytree(ARTIFACTS / name, folder, ignore=shutil.ignore_patterns("runs", "__pycache__"))
    study = folder / "study.yaml"
    study.write_text(study.read_text().replace("repeats: 6", f"repeats: {repeats}"))
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "bench"]):
        subprocess.run(["git", "-C", str(root), *args], check=True, env=GIT, capture_output=True)
    return folder


def run(folder: Path, command: str, metric: str, timeout_s: float = 900) -> Measurement:
    config = CommandConfig(command=command, timeout_s=timeout_s, passenv=["TIME_BUDGET_S"])
    return CommandEvaluator(config, metric).evaluate(folder, folder.parent / "logs" / "bench.log")


def gpt_train(root: Path, budget: float) -> None:
    os.environ["TIME_BUDGET_S"] = f"{budget:g}"
    m = run(copy("gpt-train", root, 6), "python harness.py", "val_bpb")
    if m.status != "ok":
        print(f"gpt-train: crashed: {m.reason}")
        return
    s = m.secondary
    mfu = s.get("mfu_percent", 0.0)
    print(f"gpt-train, {budget:g} s of training, {s.get('num_steps', 0):g} steps:")
    print(f"  val_bpb {m.metric:.4f}   MFU {mfu:.1f}% (target >= 40%: "
          f"{'met' if mfu >= 40 else 'MISSED'})   tokens/s {s.get('tokens_per_s', 0):,.0f}   "
          f"peak VRAM {s.get('peak_vram_mb', 0):,.0f} MB")  # fmt: skip


class Scripted:
    """Hands over the scripted kernels, one a proposal."""

    name = "scripted"

    def __init__(self, texts: dict[str, str]) -> None:
        self.texts = list(texts.items())

    def propose(self, context: Context) -> Proposal:
        what, text = self.texts.pop(0)
        path = next(p for p in context.files if p.endswith("kernel.py"))
        return Proposal(what, {path: text}, self.name)

    def learn(self, context: Context, outcome: Outcome) -> Learned:
        return Learned()


def kernel_campaign(root: Path, repeats: int) -> None:
    from core.ledger import Ledger
    from flows.campaign import campaign
    from steps.plugins import load_study

    folder = copy("gpu-kernel", root, repeats)
    scripted = Scripted(kernels((folder / "kernel.py").read_text()))
    with prefect_server(root / "prefect"):
        asyncio.run(campaign(str(folder), experiments=3, researcher=scripted))
    study = load_study(folder)
    print(f"gpu-kernel, mannwhitney over {repeats} interleaved runs:")
    print(f"  {'#':>2} {'status':<9} {'gbps':>8} {'roofline':>9}  description / evidence")
    for r in Ledger(study.state_dir / "results.tsv", study.metric.name).rows():
        roof = r.secondary.get("roofline_pct")
        shown = f"{roof:.1f}%" if roof is not None else "-"
        print(f"  {r.experiment:>2} {r.status:<9} {r.metric:>8.1f} {shown:>9}  {r.description}")
        print(f"  {'':>2} {'':<9} {'':>8} {'':>9}  {r.evidence[:110]}")


def gates(root: Path) -> None:
    """Each kernel through the correctness gate alone (Triton's interpreter without a GPU)."""
    folder = copy("gpu-kernel", root, 6)
    plain = (folder / "kernel.py").read_text()
    print("the gate alone:")
    for what, text in {"plain (the study's)": plain, **kernels(plain)}.items():
        (folder / "kernel.py").write_text(text)
        m = run(folder, "python harness.py --gate", "gate_cases", 300)
        said = f"{m.metric:g} cases passed" if m.status == "ok" else f"refused: {m.reason}"
        print(f"  {what:<28} {said[:120]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=90.0, help="gpt-train's seconds")
    parser.add_argument("--repeats", type=int, default=3, help="the kernel rule's runs each")
    args = parse_args(parser, SMOKE)
    import torch

    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        root = Path(tmp)
        if not torch.cuda.is_available():
            print("no CUDA GPU here: gpt-train at its CUDA configuration and the kernel's timing")
            print("need one (run this on a GPU machine for the figures)")
            gates(root / "gates")
            return
        print(f"GPU: {torch.cuda.get_device_name()}")
        if not args.smoke:
            gpt_train(root / "gpt", args.budget)
        gates(root / "gates")
        kernel_campaign(root / "kernel", args.repeats)


if __name__ == "__main__":
    main()
