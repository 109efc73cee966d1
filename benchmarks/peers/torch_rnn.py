"""PyTorch peers for the recurrent training benchmarks: torch.nn.LSTM / torch.nn.GRU, eager, on CPU.

The same step as benchmarks/bench_recurrent.py: one recurrent layer over x [B, T, D], a linear readout of
every output, MSE against random targets, Adam. torch.nn.LSTM / GRU run PyTorch's fused CPU kernels (oneDNN
where available); threads are torch's default (one per core).
"""
from __future__ import annotations

import torch
from common import torch_train_callable


class Recurrent(torch.nn.Module):
    def __init__(self, kind: str, D: int, H: int):
        super().__init__()
        layer = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind]
        self.rnn = layer(D, H, num_layers=1, batch_first=True)
        self.readout = torch.nn.Linear(H, 1)

    def forward(self, x):
        ys, _ = self.rnn(x)  # [B, T, H]
        return self.readout(ys)  # [B, T, 1]


def _setup(kind: str, config: dict):
    torch.manual_seed(0)
    B, T, D, H = config["B"], config["T"], config["D"], config["H"]
    model = Recurrent(kind, D, H)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(B, T, D)
    target = torch.randn(B, T, 1)
    run = torch_train_callable(model, optimizer, lambda m: torch.mean((m(x) - target) ** 2))
    for _ in range(3):
        run()
    return run


def setup_lstm(config):
    return _setup("lstm", config)


def setup_gru(config):
    return _setup("gru", config)
