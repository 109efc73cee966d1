"""PyTorch peer for the attention benchmarks: torch.nn.functional.scaled_dot_product_attention, fwd + bwd.

Same step as benchmarks/bench_attention.py: out = SDPA(q, k, v), then the gradients of <out, g> w.r.t.
q, k, v.
On CPU, SDPA dispatches to PyTorch's fused flash-attention kernel (blocked, online softmax, causal blocks
skipped); threads are torch's default (one per core).
"""
from __future__ import annotations

import torch


def setup_sdpa(config):
    B, N, T, K = config["B"], config["N"], config["T"], config["K"]
    generator = torch.Generator().manual_seed(0)
    # torch's layout is [B, N, T, K]; the layout is part of the peer's best path, as [B, T, N, K] is seqjax's.
    q, k, v = (torch.randn(B, N, T, K, generator=generator, requires_grad=True) for _ in range(3))
    g = torch.randn(B, N, T, K, generator=generator)

    def run():
        q.grad = k.grad = v.grad = None
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=config["causal"])
        out.backward(g)
        return q.grad

    for _ in range(3):
        run()
    return run
