"""Editable: the model, its optimizer, its schedule and its training loop.

The harness (harness.py, protected) calls two functions:

    build_model(vocab_size, seq_len, device) -> nn.Module  # model(x: (B, T) int64) -> logits
    train(model, data, clock) -> None

`data.batch(batch_size, seq_len)` gives (inputs, targets) on the device; `clock.step()` must be
called after every optimizer step and says whether to go on; `clock.progress` (0..1) is the
fraction of the budget used. The harness scores the returned model from its logits on text it
never sees here, with context `seq_len`. Everything in this file may change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import prepare
import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Config:
    depth: int = 8
    d_model: int = 512
    n_head: int = 4  # heads of 128
    seq_len: int = 2048
    batch_size: int = 128  # sequences per forward pass
    grad_accum: int = 2  # forward passes per optimizer step: 128 x 2048 x 2 = 2**19 tokens
    dropout: float = 0.2
    lr: float = 1e-3
    min_lr_frac: float = 0.1
    weight_decay: float = 0.1
    warmup_steps: int = 100
    warmdown_frac: float = 0.5  # the last half of the budget decays the learning rate linearly
    grad_clip: float = 1.0
    compile: bool = True  # torch.compile on CUDA
    cpu_threads: int = 0  # on the CPU: torch threads (0: torch's default)
    log_every: int = 100


# Karpathy's H100 set-up: depth 8, width 512 (heads of 128), 2048-token sequences, 2**19 tokens
# per step (128 x 2048, twice), 300 s; bf16 autocast, torch.compile, fused AdamW. Dropout stays:
# the bundled corpus is 2.2 MB, which five minutes at this scale sees about 200 times.
GPU = Config()
MPS = replace(GPU, n_head=8, seq_len=512, batch_size=64, grad_accum=1)  # an Apple laptop
CPU = replace(  # a 2-core CPU in 20 s: small and many steps beat big and few
    GPU, depth=2, d_model=64, n_head=2, seq_len=256, batch_size=8, dropout=0.0, lr=5e-3,
    grad_accum=1, warmup_steps=10, warmdown_frac=0.3, compile=False, cpu_threads=1, log_every=50,
)  # fmt: skip


def config_for(device: torch.device) -> Config:
    return {"cuda": GPU, "mps": MPS}.get(device.type, CPU)


# Model -----------------------------------------------------------------------------------


def rotary(seq_len: int, head_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables for rotary position embeddings, (seq_len, head_dim / 2)."""
    inv = 1.0 / (10000 ** (torch.arange(0, head_dim, 2).float() / head_dim))
    angles = torch.outer(torch.arange(seq_len).float(), inv)
    return angles.cos(), angles.sin()


def norm(x: torch.Tensor) -> torch.Tensor:
    """RMS norm over the last dimension, without a learnt gain."""
    return F.rms_norm(x, x.shape[-1:])


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    cos, sin = cos[: x.size(-2)].to(x.dtype), sin[: x.size(-2)].to(x.dtype)
    return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_head, c // self.n_head).unbind(2)
        q, k, v = (z.transpose(1, 2) for z in (q, k, v))
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        q, k = norm(q), norm(k)
        drop = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=drop)
        return self.proj(y.transpose(1, 2).reshape(b, t, c))


class Block(nn.Module):
    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.attn = Attention(cfg)
        self.fc = nn.Linear(cfg.d_model, 4 * cfg.d_model, bias=False)
        self.out = nn.Linear(4 * cfg.d_model, cfg.d_model, bias=False)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(norm(x), cos, sin))
        h = F.gelu(self.fc(norm(x)))
        return x + self.drop(self.out(h))


class GPT(nn.Module):
    """A pre-norm decoder: rotary positions, QK-norm, GELU MLP, untied output head."""

    def __init__(self, cfg: Config, vocab_size: int, max_len: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.depth = cfg.depth
        self.embed = nn.Embedding(vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.head = nn.Linear(cfg.d_model, vocab_size, bias=False)
        cos, sin = rotary(max(cfg.seq_len, max_len), cfg.d_model // cfg.n_head)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self.apply(self._init)
        for block in self.blocks:  # residual projections start small, as in GPT-2
            for w in (block.attn.proj.weight, block.out.weight):
                nn.init.normal_(w, std=0.02 / math.sqrt(2 * cfg.depth))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear | nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.embed(idx)
        for block in self.blocks:
            x = block(x, self.cos, self.sin)
        return self.head(norm(x))

    def flops_per_token(self) -> float:
        """Training FLOPs per token: 6 per matmul weight plus attention over seq_len."""
        matmul = sum(p.numel() for n, p in self.named_parameters() if not n.startswith("embed"))
        return 6.0 * matmul + 12.0 * self.cfg.depth * self.cfg.d_model * self.cfg.seq_len


def build_model(vocab_size: int, seq_len: int, device: torch.device) -> nn.Module:
    """The model to train; it must give logits for contexts of seq_len tokens."""
    cfg = config_for(device)
    print(f"# config {cfg}")
    if device.type == "cpu" and cfg.cpu_threads:
        torch.set_num_threads(cfg.cpu_threads)
    if device.type == "cuda":  # TF32 for what autocast leaves in float32
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return GPT(cfg, vocab_size, seq_len).to(device)


# Training --------------------------------------------------------------------------------


def make_optimizer(model: GPT, cfg: Config, device: torch.device) -> torch.optim.Optimizer:
    """AdamW; weight decay on the matrices of the blocks only."""
    named = list(model.named_parameters())
    decay = [p for n, p in named if p.dim() == 2 and n.startswith("blocks")]
    other = [p for n, p in named if not (p.dim() == 2 and n.startswith("blocks"))]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": other, "weight_decay": 0.0},
    ]
    fused = device.type == "cuda"
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95), fused=fused)


def learning_rate(cfg: Config, step: int, progress: float) -> float:
    """Linear warm-up by steps, flat, then a linear warm-down over the budget's last part."""
    warm = min(1.0, (step + 1) / cfg.warmup_steps)
    down = min(1.0, (1.0 - progress) / cfg.warmdown_frac)
    return cfg.lr * warm * (cfg.min_lr_frac + (1 - cfg.min_lr_frac) * down)


def compiled(model: GPT, cfg: Config, device: torch.device) -> nn.Module:
    """torch.compile on CUDA GPUs that its Triton kernels support (compute capability 7+)."""
    if cfg.compile and device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 7:
        return torch.compile(model)
    return model


def accumulate(
    forward: nn.Module, data: prepare.TrainData, cfg: Config, device: torch.device
) -> torch.Tensor:
    """Gradients of the mean loss over cfg.grad_accum micro-batches; returns that loss."""
    total = torch.zeros((), device=device)
    for _ in range(cfg.grad_accum):
        x, y = data.batch(cfg.batch_size, cfg.seq_len)
        with prepare.autocast(device):
            logits = forward(x)
        loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten()) / cfg.grad_accum
        loss.backward()
        total += loss.detach()
    return total


def train(model: GPT, data: prepare.TrainData, clock: prepare.Clock) -> None:
    """Train until the clock says stop."""
    cfg, device = model.cfg, data.device
    opt = make_optimizer(model, cfg, device)
    forward = compiled(model, cfg, device)
    model.train()
    step = 0
    while True:
        lr = learning_rate(cfg, step, clock.progress)
        for group in opt.param_groups:
            group["lr"] = lr
        loss = accumulate(forward, data, cfg, device)
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        go_on = clock.step()
        if step % cfg.log_every == 0 or not go_on:
            print(
                f"step {step:6d} | loss {loss.item():.4f} | lr {lr:.2e} "
                f"| {100 * clock.progress:5.1f}% of {clock.budget_s:g} s"
            )
        if not go_on:
            return
