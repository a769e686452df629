"""RMSNorm as a Triton kernel: y = x / sqrt(mean(x^2) + eps) * weight, row by row.

The editable artifact of the gpu-kernel study. `rmsnorm(x, weight, eps)` takes a 2-D CUDA
tensor x (rows, cols; float32, float16 or bfloat16, contiguous) and weight (cols, same dtype) and
returns y like x. This first version is plain on purpose: one program per row, reading the row
twice in small chunks (once for the sum of squares, once to normalise), with one warp.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK = 64


@triton.jit
def _rmsnorm_rows(x_ptr, w_ptr, y_ptr, n_cols, eps, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    start = row.to(tl.int64) * n_cols
    total = tl.zeros([BLOCK], dtype=tl.float32)
    for off in range(0, n_cols, BLOCK):
        cols = off + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + start + cols, mask=cols < n_cols, other=0.0).to(tl.float32)
        total += x * x
    scale = 1.0 / tl.sqrt(tl.sum(total, axis=0) / n_cols + eps)
    for off in range(0, n_cols, BLOCK):
        cols = off + tl.arange(0, BLOCK)
        mask = cols < n_cols
        x = tl.load(x_ptr + start + cols, mask=mask, other=0.0).to(tl.float32)
        w = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
        tl.store(y_ptr + start + cols, (x * scale * w).to(y_ptr.dtype.element_ty), mask=mask)


def rmsnorm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    y = torch.empty_like(x)
    rows, cols = x.shape
    _rmsnorm_rows[(rows,)](x, weight, y, cols, eps, BLOCK=BLOCK, num_warps=1)
    return y
