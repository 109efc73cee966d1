"""PyTorch peer for the GPT benchmarks: a minimal nanoGPT-style character model, eager, on CPU.

Pre-LN blocks (LayerNorm -> causal self-attention via scaled_dot_product_attention -> residual, LayerNorm ->
MLP 4D with GELU -> residual), learned positions, a final LayerNorm and output logits tied to the token
embedding; no dropout. The same model and AdamW step as seqjax's models.gpt.GPT in bench_gpt.py.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from common import torch_train_callable


class CausalSelfAttention(torch.nn.Module):
    def __init__(self, D: int, N: int):
        super().__init__()
        self.N = N
        self.qkv = torch.nn.Linear(D, 3 * D)
        self.proj = torch.nn.Linear(D, D)

    def forward(self, x):
        B, T, D = x.shape
        q, k, v = self.qkv(x).split(D, dim=2)
        q, k, v = (t.view(B, T, self.N, D // self.N).transpose(1, 2) for t in (q, k, v))  # [B, N, T, K]
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).contiguous().view(B, T, D))


class Block(torch.nn.Module):
    def __init__(self, D: int, N: int, F_: int):
        super().__init__()
        self.ln1, self.ln2 = torch.nn.LayerNorm(D), torch.nn.LayerNorm(D)
        self.attn = CausalSelfAttention(D, N)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(D, F_), torch.nn.GELU(), torch.nn.Linear(F_, D))

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(torch.nn.Module):
    def __init__(self, V: int, D: int, N: int, L: int, F_: int, T_max: int):
        super().__init__()
        self.tok = torch.nn.Embedding(V, D)
        self.pos = torch.nn.Embedding(T_max, D)
        self.blocks = torch.nn.ModuleList(Block(D, N, F_) for _ in range(L))
        self.ln_f = torch.nn.LayerNorm(D)
        torch.nn.init.normal_(self.tok.weight, std=0.02)
        torch.nn.init.normal_(self.pos.weight, std=0.02)
        self.D = D

    def forward(self, tokens):
        T = tokens.shape[1]
        x = self.tok(tokens) + self.pos(torch.arange(T))[None]
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x) @ self.tok.weight.T  # [B, T, V], tied output embedding


def build(config) -> GPT:
    D = config["D"]
    return GPT(config["V"], D, config["N"], config["L"], config.get("F", 4 * D), config["T"])


def setup_train(config):
    torch.manual_seed(0)
    B, T, V = config["B"], config["T"], config["V"]
    model = build(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1)
    tokens = torch.randint(0, V, (B, T + 1))
    inputs, targets = tokens[:, :-1], tokens[:, 1:]

    def loss_fn(m):
        logits = m(inputs)
        return F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))

    run = torch_train_callable(model, optimizer, loss_fn)
    for _ in range(3):
        run()
    assert math.isfinite(float(run().detach()))
    return run
