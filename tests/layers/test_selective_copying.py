"""Selective copying (Mamba paper, section 3.1): Mamba learns it, an LTI S4D only partly.

Task (``ssmts.datasets.synthetic.selective_copying``): 4 colour tokens out of 16,
at random positions in 64 noise tokens, then 4 markers; at the j-th marker the
model must output the j-th colour. Model: token embedding -> 2-block
``SSMBackbone`` -> linear head on the marker positions; cross-entropy; AdamW with
a one-cycle schedule; fresh samples every step; accuracy on 1000 held-out
sequences (chance: 1/16).

The slow test trains a Mamba backbone (d_model 64, N 8) for 600 steps (lr 5e-3) and an S4D
backbone of the same width and depth (N 64, plus a feed-forward so its parameter
count is comparable) for the same steps, and prints both accuracies (this seed, one
thread: Mamba 1.000, S4D 0.716; about 3.5 minutes on a loaded 2-core machine).
The selective scan runs through ``selective_scan_fast`` (the dispatcher's torch path);
one thread, because at these sizes the per-op thread
synchronisation costs more than it gains on a shared 2-core machine.
"""

import time

import pytest
import torch
from torch import nn

from ssmts.datasets.synthetic import selective_copying, selective_copying_vocab_size
from ssmts.layers.block import SSMBackbone

SEQ_LEN, N_COPY, N_COLOURS = 64, 4, 16
VOCAB = selective_copying_vocab_size(N_COLOURS)


class CopyModel(nn.Module):
    """Embedding -> backbone -> head read at the last ``N_COPY`` (marker) positions."""

    def __init__(self, layer: str, d_model: int, d_state: int, ffn_mult: int = 0):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, d_model)
        self.backbone = SSMBackbone(layer=layer, d_model=d_model, n_layers=2, d_state=d_state,
                                    ffn_mult=ffn_mult)
        self.head = nn.Linear(d_model, VOCAB)

    def forward(self, tokens):
        return self.head(self.backbone(self.emb(tokens))[:, -N_COPY:])  # (b, N_COPY, VOCAB)


@pytest.fixture
def fast_scan_one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def train(model, steps, lr, batch=64, seed=1):
    """Train on fresh samples each step; returns the list of training losses."""
    torch.manual_seed(seed)
    x_all, y_all = selective_copying(batch * steps, SEQ_LEN, N_COPY, N_COLOURS, seed=seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    losses = []
    for i in range(steps):
        x, y = x_all[i * batch:(i + 1) * batch], y_all[i * batch:(i + 1) * batch]
        loss = nn.functional.cross_entropy(model(x).reshape(-1, VOCAB), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    return losses


@torch.no_grad()
def accuracy(model, n=1000, seed=12345):
    """Token accuracy on held-out sequences (a seed the training never uses)."""
    x, y = selective_copying(n, SEQ_LEN, N_COPY, N_COLOURS, seed=seed)
    pred = torch.cat([model(xb).argmax(-1) for xb in x.split(250)])
    return float((pred == y).float().mean())


def _run(layer, d_state, ffn_mult, steps):
    torch.manual_seed(0)
    model = CopyModel(layer, d_model=64, d_state=d_state, ffn_mult=ffn_mult)
    t0 = time.perf_counter()
    train(model, steps, lr=5e-3)
    acc = accuracy(model)
    n_par = sum(p.numel() for p in model.parameters())
    print(f"{layer}: {n_par} parameters, {steps} steps, held-out token accuracy {acc:.3f}, "
          f"{time.perf_counter() - t0:.0f} s")
    return acc


@pytest.mark.slow
def test_mamba_learns_selective_copying_s4d_falls_short(fast_scan_one_thread):
    acc_mamba = _run("mamba", d_state=8, ffn_mult=0, steps=600)
    acc_s4d = _run("s4d", d_state=64, ffn_mult=2, steps=600)
    print(f"selective copying accuracy: mamba {acc_mamba:.3f}, s4d {acc_s4d:.3f}")
    assert acc_mamba > 0.95
    # at L = 64 an LTI model with a long kernel and a feed-forward solves part of the task
    # (0.72 with this seed; the paper's 18% for S4 is at L = 4096): clearly below, not chance
    assert acc_s4d < 0.85 and acc_mamba - acc_s4d > 0.2


def test_mamba_copying_loss_decreases(fast_scan_one_thread):
    """A few steps of the same training lower the loss (fast smoke test)."""
    torch.manual_seed(0)
    model = CopyModel("mamba", d_model=32, d_state=8)
    losses = train(model, steps=40, lr=3e-3, batch=32)
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    print(f"loss: first 5 steps {first:.3f}, last 5 steps {last:.3f}")
    assert all(torch.isfinite(torch.tensor(losses)))
    assert last < first - 0.1
