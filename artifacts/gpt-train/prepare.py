"""Protected: the fixed parts of the gpt-train study. Candidates may not change this file.

Constants, the data and its checksum, the byte-level tokenizer, the training data loader, the
wall-clock budget and the evaluation. The score is computed here from the model's logits, in the
evaluator's own process (harness.py), where train.py never runs: editable code decides how the
model learns but never how it is scored.

`python prepare.py` checks (or downloads) the data and prints its statistics.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import math
import os
import time
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

# Fixed constants: changing any of them makes results incomparable with earlier ones.
HERE = Path(__file__).resolve().parent
CORPUS = HERE / "data" / "corpus.txt"
CORPUS_SHA256 = "9d16b167c85b479e2eba60c661b4892c6ea662edb3a76d5da1be5662c2bba292"
VOCAB_SIZE = 256  # one token per byte: bits per byte are then exact, with no tokenizer to game
VAL_BYTES = 128 * 1024  # the validation split: the last VAL_BYTES bytes of the corpus
EVAL_SEQ_LEN = 512  # the context the model is scored with; build_model must accept it
EVAL_BATCH = 16
SEED = 1337
WARMUP_STEPS = 3  # the first steps (torch.compile, allocator warm-up) are not budgeted
MIN_WARMUP_CAP_S = 60.0  # ...but may take at most max(budget, this) seconds together
OVERRUN_SLACK_S = 5.0  # train() must return within budget + max(this, 10%) after warm-up
HARD_KILL_FACTOR, HARD_KILL_GRACE_S = 2.0, 60.0  # the harness exits at 2 x budget + 60 s
DEFAULT_BUDGET_S = {"cuda": 300.0, "mps": 300.0, "cpu": 20.0}
PEAK_BF16_FLOPS = {"H100": 989.5e12, "H200": 989.5e12, "H800": 989.5e12, "A100": 312e12}

# Environment variables read here (study.yaml's evaluator.env or the shell sets them).
ENV_BUDGET = "TIME_BUDGET_S"
ENV_DEVICE = "GPT_TRAIN_DEVICE"
ENV_DATA_URL = "GPT_TRAIN_DATA_URL"
ENV_DATA_SHA = "GPT_TRAIN_DATA_SHA256"
ENV_CACHE = "GPT_TRAIN_CACHE"
ENV_PEAK_FLOPS = "PEAK_FLOPS"


class HarnessError(Exception):
    """A problem with what train.py did, or with the set-up; the message says which."""


class SetupError(HarnessError):
    """The environment or the data is wrong (not the candidate): exit code 2."""


# Device and budget -----------------------------------------------------------------------


def pick_device() -> torch.device:
    """CUDA when present, else Apple MPS, else the CPU; GPT_TRAIN_DEVICE overrides."""
    forced = os.environ.get(ENV_DEVICE, "").strip()
    if forced:
        if forced.split(":")[0] not in DEFAULT_BUDGET_S:
            raise SetupError(f"{ENV_DEVICE}={forced!r}: expected cuda, mps or cpu")
        return torch.device(forced)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def time_budget(device: torch.device) -> float:
    """Training seconds from TIME_BUDGET_S, else the device's default (300 GPU, 20 CPU)."""
    raw = os.environ.get(ENV_BUDGET, "").strip()
    if not raw:
        return DEFAULT_BUDGET_S[device.type]
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise SetupError(f"{ENV_BUDGET}={raw!r} is not a positive number of seconds")
    return value


def autocast(device: torch.device) -> contextlib.AbstractContextManager[None]:
    """bf16 autocast on CUDA (where the GPU supports bf16); full precision elsewhere."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def synchronize(device: torch.device) -> None:
    """Wait for queued device work, so that wall-clock times are real."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


# Data and tokenizer -----------------------------------------------------------------------


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _download(url: str, expected: str | None) -> bytes:
    """The corpus at url (gzip is unpacked), cached under GPT_TRAIN_CACHE by its sha256."""
    cache = Path(os.environ.get(ENV_CACHE) or Path.home() / ".cache" / "autoresearch" / "gpt-train")
    if expected:
        cached = cache / f"{expected}.txt"
        if cached.is_file():
            return cached.read_bytes()
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:  # noqa: S310 (the user's URL)
            raw = resp.read()
    except OSError as exc:
        raise SetupError(f"{ENV_DATA_URL}={url!r}: download failed: {exc}") from None
    data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    digest = sha256(data)
    if expected and digest != expected:
        raise SetupError(f"{ENV_DATA_URL}={url!r}: sha256 {digest} != {ENV_DATA_SHA} {expected}")
    cache.mkdir(parents=True, exist_ok=True)
    (cache / f"{digest}.txt").write_bytes(data)
    return data


def load_corpus() -> tuple[bytes, str]:
    """The corpus bytes and their sha256: the committed file, or GPT_TRAIN_DATA_URL's text."""
    url = os.environ.get(ENV_DATA_URL, "").strip()
    if url:
        data = _download(url, os.environ.get(ENV_DATA_SHA, "").strip().lower() or None)
    else:
        if not CORPUS.is_file():
            raise SetupError(f"{CORPUS}: the corpus file is missing")
        data = CORPUS.read_bytes()
        if sha256(data) != CORPUS_SHA256:
            raise SetupError(f"{CORPUS}: sha256 {sha256(data)} != expected {CORPUS_SHA256}")
    if len(data) < 4 * VAL_BYTES:
        raise SetupError(f"corpus has {len(data)} bytes; at least {4 * VAL_BYTES} are needed")
    return data, sha256(data)


def encode(text: str | bytes) -> torch.Tensor:
    """Byte-level tokenizer: each UTF-8 byte is one token (0..255)."""
    raw = text.encode("utf-8") if isinstance(text, str) else text
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8).clone()


def decode(tokens: torch.Tensor) -> str:
    return bytes(tokens.to(torch.uint8).tolist()).decode("utf-8", errors="replace")


def split(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, val): the validation split is the corpus's last VAL_BYTES bytes."""
    return tokens[:-VAL_BYTES], tokens[-VAL_BYTES:]


class TrainData:
    """Random windows of the training split, on the device; counts the tokens it serves."""

    def __init__(self, tokens: torch.Tensor, device: torch.device, seed: int = SEED) -> None:
        self.device = device
        self.tokens = tokens.to(device)
        self.num_tokens = len(tokens)
        self.tokens_served = 0
        self._gen = torch.Generator().manual_seed(seed)

    def batch(self, batch_size: int, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets), each (batch_size, seq_len) int64; targets are inputs shifted by 1."""
        if batch_size < 1 or not 1 <= seq_len < self.num_tokens:
            raise HarnessError(f"batch({batch_size}, {seq_len}): sizes out of range")
        starts = torch.randint(0, self.num_tokens - seq_len, (batch_size,), generator=self._gen)
        offsets = torch.arange(seq_len + 1)
        idx = (starts[:, None] + offsets[None, :]).to(self.device, non_blocking=True)
        window = self.tokens[idx].long()
        self.tokens_served += batch_size * seq_len
        return window[:, :-1], window[:, 1:]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        raise TypeError("call data.batch(batch_size, seq_len) for each step")


# The clock -------------------------------------------------------------------------------


class Clock:
    """The training budget. train() calls step() after every optimizer step; it says whether
    to go on. The first WARMUP_STEPS steps (compilation) are timed apart and not budgeted."""

    def __init__(self, budget_s: float, device: torch.device, data: TrainData) -> None:
        self.budget_s = budget_s
        self.device = device
        self._data = data
        self.steps = 0
        self.warmup_seconds = 0.0
        self.training_seconds = 0.0
        self.budgeted_tokens = 0
        self._warm_tokens = 0
        self._last = time.perf_counter()

    def start(self) -> None:
        self._last = time.perf_counter()

    @property
    def progress(self) -> float:
        """The fraction of the budget used, 0..1: for learning-rate schedules."""
        return min(1.0, self.training_seconds / self.budget_s)

    @property
    def remaining_s(self) -> float:
        return max(0.0, self.budget_s - self.training_seconds)

    def step(self) -> bool:
        """Record one finished step; True while training may continue."""
        synchronize(self.device)
        now = time.perf_counter()
        dt, self._last = now - self._last, now
        self.steps += 1
        if self.steps <= WARMUP_STEPS:
            self.warmup_seconds += dt
            if self.steps == WARMUP_STEPS:
                self._warm_tokens = self._data.tokens_served
        else:
            self.training_seconds += dt
            self.budgeted_tokens = self._data.tokens_served - self._warm_tokens
        return self.training_seconds < self.budget_s

    def check(self, train_wall_s: float) -> None:
        """Raise when train() never stepped, warmed up too long, or ran past its budget."""
        if self.steps == 0:
            raise HarnessError("train() returned without calling clock.step()")
        cap = max(self.budget_s, MIN_WARMUP_CAP_S)
        if self.warmup_seconds > cap:
            raise HarnessError(
                f"the first {WARMUP_STEPS} steps took {self.warmup_seconds:.1f} s; "
                f"warm-up and compilation may take at most {cap:.0f} s"
            )
        overrun = train_wall_s - self.warmup_seconds - self.budget_s
        if overrun > max(OVERRUN_SLACK_S, 0.1 * self.budget_s):
            raise HarnessError(
                f"train() ran {overrun:.1f} s past its {self.budget_s:.0f} s budget: "
                "stop when clock.step() returns False"
            )


# Evaluation ------------------------------------------------------------------------------
# The child process (harness.py --child) computes logits on inputs the evaluator chose; the
# evaluator's own process, where no train.py code runs, turns them into the score.

PROBE_CUTS = (1, EVAL_SEQ_LEN // 2, EVAL_SEQ_LEN - 1)  # the causality probes change bytes from here


def windows(val: torch.Tensor, seq_len: int = EVAL_SEQ_LEN) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-overlapping windows: every val byte after the first is a target exactly once."""
    n = (len(val) - 1) // seq_len
    x = val[: n * seq_len].view(n, seq_len).long()
    y = val[1 : n * seq_len + 1].view(n, seq_len).long()
    return x, y


def causal_probes(val: torch.Tensor) -> torch.Tensor:
    """Inputs for the checks: the first window twice, then copies with later bytes changed."""
    base = val[:EVAL_SEQ_LEN].long()
    gen = torch.Generator().manual_seed(SEED)
    rows = [base, base.clone()]
    for cut in PROBE_CUTS:
        changed = base.clone()
        changed[cut:] = torch.randint(0, VOCAB_SIZE, (EVAL_SEQ_LEN - cut,), generator=gen)
        rows.append(changed)
    return torch.stack(rows)


def model_logits(model: nn.Module, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The model's logits for x as float32, checked for shape (in the child process)."""
    with autocast(device):
        out = model(x.to(device))
    if not isinstance(out, torch.Tensor) or out.shape != (*x.shape, VOCAB_SIZE):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise HarnessError(f"model(x) must return logits {(*x.shape, VOCAB_SIZE)}, got {shape}")
    return out.float()


@dataclass(frozen=True)
class Score:
    bpb: float
    nats: float  # summed cross-entropy over all targets
    num_bytes: int  # validation bytes scored (one token each)


@torch.inference_mode()
def score_logits(chunks: Iterable[torch.Tensor], targets: torch.Tensor) -> Score:
    """val_bpb = summed per-token cross-entropy (nats) / (ln 2 * bytes scored), from logits.

    chunks: the logits of the validation windows in order, a few windows at a time.
    """
    total = torch.zeros((), dtype=torch.float64)
    row = 0
    for logits in chunks:
        target = targets[row : row + len(logits)]
        logp = torch.log_softmax(logits.float(), dim=-1)
        total += -logp.gather(-1, target[..., None]).sum().double()
        row += len(logits)
    if row != len(targets):
        raise HarnessError(f"logits for {row} validation windows, expected {len(targets)}")
    nats = float(total)
    if not math.isfinite(nats):
        raise HarnessError(f"validation cross-entropy is {nats}")
    return Score(bpb=nats / (math.log(2) * targets.numel()), nats=nats, num_bytes=targets.numel())


def check_probes(logits: torch.Tensor) -> None:
    """Raise when the probes' logits (see causal_probes) show randomness or a peek ahead."""
    if torch.isnan(logits).any():
        raise HarnessError("the model's logits contain NaN")
    base, again = logits[0], logits[1]
    tol = 1e-2 * max(1.0, float(base.abs().max()))
    diff = float((again - base).abs().max())
    if diff > tol:
        raise HarnessError(
            f"the model is not deterministic in eval mode: the same bytes gave logits that "
            f"differ by {diff:.4g} (is dropout or other randomness left on in eval mode?)"
        )
    for cut, changed in zip(PROBE_CUTS, logits[2:], strict=True):
        diff = float((changed[:cut] - base[:cut]).abs().max())
        if diff > tol:
            raise HarnessError(
                f"the model is not causal: logits before position {cut} changed by {diff:.4g} "
                "when later bytes changed"
            )


# Reporting -------------------------------------------------------------------------------


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else device.type


def peak_flops(device_type: str, name: str) -> float | None:
    """The device's dense bf16 peak (PEAK_FLOPS overrides); None where unknown."""
    raw = os.environ.get(ENV_PEAK_FLOPS, "").strip()
    if raw:
        return float(raw)
    if device_type != "cuda":
        return None
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    if device.type == "mps":
        return torch.mps.driver_allocated_memory() / 2**20
    return 0.0


def peak_rss_mb(children: bool = False) -> float:
    """Peak resident memory of this process, or of its largest finished child process."""
    import resource
    import sys

    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    rss = resource.getrusage(who).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def summary_lines(values: dict[str, str]) -> list[str]:
    """Karpathy's block: a --- line, then `name:` padded to 18 columns and the value."""
    return ["---"] + [f"{name + ':':<18}{value}" for name, value in values.items()]


def main() -> None:
    data, digest = load_corpus()
    tokens = encode(data)
    train, val = split(tokens)
    print(f"corpus: {len(data)} bytes, sha256 {digest}")
    print(f"train {len(train)} bytes, val {len(val)} bytes, vocab {VOCAB_SIZE} (bytes)")
    print(decode(val[:300]))


if __name__ == "__main__":
    main()
