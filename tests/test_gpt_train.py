"""The gpt-train study: its harness trains for a budget and scores from logits, honestly.

The harness trains in a child process and scores, in its own process, the float32 logits the
child wrote. The score is checked against an independent computation (numpy log-softmax in
float64 over the same model's logits, on validation windows cut here from the corpus file), and
the harness is shown to refuse candidates that break its rules. Everything runs on the CPU, for
a few seconds each. tests/test_evaluator_isolation.py covers candidates that attack the scoring.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import importlib
import math
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")

from evaluators.command import parse_metrics  # noqa: E402

STUDY = Path(__file__).resolve().parent.parent / "artifacts" / "gpt-train"
VAL_BYTES, SEQ_LEN, VOCAB = 128 * 1024, 512, 256  # what prepare.py promises
SUMMARY = [
    "val_bpb",
    "training_seconds",
    "total_seconds",
    "peak_vram_mb",
    "mfu_percent",
    "total_tokens_M",
    "num_steps",
    "num_params_M",
    "depth",
]
SAVE_WRAPPER = """

import os as _os

_original_train = train


def train(model, data, clock):  # the test's candidate: train as usual, then save the weights
    _original_train(model, data, clock)
    torch.save(model.state_dict(), _os.environ["GPT_TRAIN_TEST_SAVE"])
"""


@pytest.fixture
def study(tmp_path: Path) -> Path:
    """A private copy of the study, so candidates can be written into it."""
    dest = tmp_path / "gpt-train"
    shutil.copytree(STUDY, dest, ignore=shutil.ignore_patterns("runs", "__pycache__"))
    return dest


def harness(folder: Path, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the study's command as the command evaluator would: in the folder, env added."""
    full = {**os.environ, "GPT_TRAIN_DEVICE": "cpu", "TIME_BUDGET_S": "3", **env}
    return subprocess.run(
        [sys.executable, "harness.py"],
        cwd=folder,
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def modules(study: Path) -> Iterator[tuple[ModuleType, ModuleType]]:
    """The copy's prepare and train modules, imported in-process and forgotten afterwards."""
    threads = torch.get_num_threads()
    sys.path.insert(0, str(study))
    try:
        yield importlib.import_module("prepare"), importlib.import_module("train")
    finally:
        sys.path.remove(str(study))
        for name in ("prepare", "train"):
            sys.modules.pop(name, None)
        torch.set_num_threads(threads)


def independent_bpb(model: torch.nn.Module, corpus: bytes) -> tuple[float, int]:
    """Bits per byte of the validation tail, from the model's logits, without prepare.py."""
    val = np.frombuffer(corpus[-VAL_BYTES:], dtype=np.uint8).astype(np.int64)
    n = (len(val) - 1) // SEQ_LEN
    xs = val[: n * SEQ_LEN].reshape(n, SEQ_LEN)
    ys = val[1 : n * SEQ_LEN + 1].reshape(n, SEQ_LEN)
    nats = 0.0
    model.eval()
    with torch.no_grad():
        for i in range(0, n, 32):
            logits = model(torch.from_numpy(xs[i : i + 32])).double().numpy()
            shifted = logits - logits.max(-1, keepdims=True)
            logp = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
            nats -= np.take_along_axis(logp, ys[i : i + 32][..., None], -1).sum()
    return nats / (math.log(2) * ys.size), ys.size


def test_harness_scores_from_logits_and_prints_the_summary(
    study: Path, modules: tuple[ModuleType, ModuleType], tmp_path: Path
) -> None:
    home = tmp_path / "home"  # the child may write its $HOME, not the rest of tmp_path
    home.mkdir()
    saved = home / "weights.pt"
    train_py = study / "train.py"
    train_py.write_text(train_py.read_text() + SAVE_WRAPPER)
    out = harness(study, HOME=str(home), GPT_TRAIN_TEST_SAVE=str(saved))
    assert out.returncode == 0, out.stderr[-3000:]

    lines = out.stdout.splitlines()
    block = lines[lines.index("---") + 1 :]
    for name, line in zip(SUMMARY, block, strict=False):
        assert re.fullmatch(rf"{name}:\s+-?\d+(\.\d+)?", line), line
        assert len(line) - len(line[18:].lstrip()) == 18, f"value not at column 18: {line!r}"
    metrics = parse_metrics(out.stdout)
    assert set(SUMMARY) <= set(metrics)
    corpus = (STUDY / "data" / "corpus.txt").read_bytes()
    assert f"# data_sha256 {hashlib.sha256(corpus).hexdigest()}" in lines

    assert 3.0 <= metrics["training_seconds"] < 3.0 + 5.0
    assert metrics["num_steps"] > 3
    assert metrics["total_seconds"] > metrics["training_seconds"]
    assert 2.0 < metrics["val_bpb"] < 8.0  # learnt something; uniform bytes would be 8

    prepare, train = modules
    model = train.build_model(VOCAB, SEQ_LEN, torch.device("cpu"))
    model.load_state_dict(torch.load(saved))
    expected, num_bytes = independent_bpb(model, corpus)
    assert metrics["val_bytes"] == num_bytes
    assert metrics["val_bpb"] == pytest.approx(expected, abs=2e-6)
    assert metrics["depth"] == model.depth


PEEKING = '''
import torch
from torch import nn


class Peek(nn.Module):
    """Predicts byte t+1 by reading it: a perfect score, if the harness allowed it."""

    depth = 1

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(10.0))

    def forward(self, x):
        nxt = torch.roll(x, -1, dims=1)
        return self.scale * nn.functional.one_hot(nxt, 256).float()


def build_model(vocab_size, seq_len, device):
    return Peek().to(device)


def train(model, data, clock):
    while clock.step():
        data.batch(2, 8)
'''

NO_STEPS = """
from torch import nn


def build_model(vocab_size, seq_len, device):
    return nn.Embedding(vocab_size, vocab_size).to(device)


def train(model, data, clock):
    return None
"""

BAD_LOGITS = """
from torch import nn


def build_model(vocab_size, seq_len, device):
    return nn.Embedding(vocab_size, 7).to(device)


def train(model, data, clock):
    while clock.step():
        pass
"""

RANDOM = """
from torch import nn


def build_model(vocab_size, seq_len, device):
    return nn.Embedding(vocab_size, vocab_size).to(device)


def train(model, data, clock):
    model.forward = lambda x: nn.functional.dropout(model.weight[x], 0.5, training=True)
    while clock.step():
        pass
"""


@pytest.mark.parametrize(
    ("candidate", "message"),
    [
        (PEEKING, "the model is not causal"),
        (NO_STEPS, "without calling clock.step()"),
        (BAD_LOGITS, "must return logits (16, 512, 256), got (16, 512, 7)"),
        (RANDOM, "the model is not deterministic in eval mode"),
    ],
)
def test_harness_refuses_candidates_that_break_the_rules(
    study: Path, candidate: str, message: str
) -> None:
    (study / "train.py").write_text(candidate)
    out = harness(study, TIME_BUDGET_S="0.5")
    assert out.returncode == 1, out.stdout + out.stderr
    assert message in out.stdout + out.stderr  # the child's errors are re-printed on stdout
    assert "val_bpb" not in parse_metrics(out.stdout)


def test_bad_set_up_exits_2_naming_the_problem(study: Path) -> None:
    out = harness(study, TIME_BUDGET_S="soon")
    assert out.returncode == 2
    assert "TIME_BUDGET_S='soon' is not a positive number of seconds" in out.stderr

    corpus = study / "data" / "corpus.txt"
    corpus.write_bytes(corpus.read_bytes() + b"tampered")
    out = harness(study)
    assert out.returncode == 2
    assert f"{corpus.resolve()}: sha256" in out.stderr


def test_a_larger_corpus_is_read_from_a_url_and_checked(
    modules: tuple[ModuleType, ModuleType], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepare, _ = modules
    text = ("Call me Ishmael. Some years ago, never mind how long precisely. " * 9000).encode()
    (tmp_path / "big.txt.gz").write_bytes(gzip.compress(text))
    digest = hashlib.sha256(text).hexdigest()
    monkeypatch.setenv("GPT_TRAIN_DATA_URL", (tmp_path / "big.txt.gz").as_uri())
    monkeypatch.setenv("GPT_TRAIN_CACHE", str(tmp_path / "cache"))

    monkeypatch.setenv("GPT_TRAIN_DATA_SHA256", "0" * 64)
    with pytest.raises(prepare.SetupError, match="big.txt.gz.*sha256"):
        prepare.load_corpus()

    monkeypatch.setenv("GPT_TRAIN_DATA_SHA256", digest)
    assert prepare.load_corpus() == (text, digest)
    assert (tmp_path / "cache" / f"{digest}.txt").read_bytes() == text
    train_split, val_split = prepare.split(prepare.encode(text))
    assert len(val_split) == VAL_BYTES and len(train_split) == len(text) - VAL_BYTES


# The GPU configuration -------------------------------------------------------------------------


def test_cuda_gets_karpathys_h100_set_up_and_the_cpu_keeps_its_own(
    modules: tuple[ModuleType, ModuleType],
) -> None:
    prepare, train = modules
    gpu = train.config_for(torch.device("cuda"))
    assert (gpu.depth, gpu.d_model, gpu.d_model // gpu.n_head, gpu.seq_len) == (8, 512, 128, 2048)
    assert gpu.batch_size * gpu.seq_len * gpu.grad_accum == 2**19  # tokens per optimizer step
    assert gpu.compile and prepare.DEFAULT_BUDGET_S["cuda"] == 300.0
    cpu = train.config_for(torch.device("cpu"))
    assert cpu.grad_accum == 1 and cpu.seq_len == 256 and not cpu.compile

    model = train.GPT(gpu, VOCAB, SEQ_LEN)  # built here on the CPU, scored with 512-byte windows
    matrices = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("embed"))
    assert model.flops_per_token() == 6 * matrices + 12 * 8 * 512 * 2048
    model.eval()
    with torch.no_grad():
        assert model(torch.zeros(1, SEQ_LEN, dtype=torch.long)).shape == (1, SEQ_LEN, VOCAB)


class Batches:
    """A stand-in for prepare.TrainData that serves prepared batches in order."""

    def __init__(self, *batches: tuple[torch.Tensor, torch.Tensor]) -> None:
        self.batches = list(batches)

    def batch(self, batch_size: int, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.batches.pop(0)
        assert x.shape == (batch_size, seq_len)
        return x, y


def test_accumulated_micro_batches_give_the_gradient_of_one_big_batch(
    modules: tuple[ModuleType, ModuleType],
) -> None:
    _, train = modules
    cfg = dataclasses.replace(train.CPU, batch_size=2, seq_len=16)
    gen = torch.Generator().manual_seed(0)
    x, y = (torch.randint(0, VOCAB, (4, 16), generator=gen) for _ in range(2))
    cpu = torch.device("cpu")

    def gradients(config, data) -> list[torch.Tensor]:  # noqa: ANN001
        torch.manual_seed(0)
        model = train.GPT(config, VOCAB, 16)
        loss = train.accumulate(model, data, config, cpu)
        assert loss.shape == ()
        return [p.grad.clone() for p in model.parameters()]

    whole = gradients(dataclasses.replace(cfg, batch_size=4), Batches((x, y)))
    halves = gradients(
        dataclasses.replace(cfg, grad_accum=2), Batches((x[:2], y[:2]), (x[2:], y[2:]))
    )
    for a, b in zip(whole, halves, strict=True):
        assert torch.allclose(a, b, atol=1e-6)
