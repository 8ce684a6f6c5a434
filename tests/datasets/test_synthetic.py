"""Tests of the synthetic tasks: the selective copying layout, checked row by row."""

import pytest
import torch

from ssmts.datasets.synthetic import (NOISE_TOKEN, selective_copying,
                                      selective_copying_vocab_size)


@pytest.mark.parametrize("seq_len,k,vocab", [(64, 4, 16), (10, 10, 3), (7, 1, 1)])
def test_layout(seq_len, k, vocab):
    x, y = selective_copying(50, seq_len=seq_len, n_tokens_to_copy=k, vocab=vocab, seed=3)
    assert x.shape == (50, seq_len + k) and y.shape == (50, k)
    assert x.dtype == torch.int64 and y.dtype == torch.int64
    marker = vocab + 1
    assert selective_copying_vocab_size(vocab) == vocab + 2
    assert bool((x[:, seq_len:] == marker).all())
    assert bool(((y >= 1) & (y <= vocab)).all())
    for row, tgt in zip(x, y):  # independent decoding: non-noise tokens of the body, in order
        body = row[:seq_len]
        colours = body[body != NOISE_TOKEN]
        assert torch.equal(colours, tgt)
        assert not bool((body == marker).any())


def test_seed_reproducible_and_varied():
    a = selective_copying(200, seed=1)
    b = selective_copying(200, seed=1)
    c = selective_copying(200, seed=2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    x, y = a
    pos = (x[:, :64] != NOISE_TOKEN).nonzero()[:, 1]
    # positions spread over the whole body, colours over the whole palette
    assert int(pos.min()) < 8 and int(pos.max()) > 56
    assert set(y.unique().tolist()) == set(range(1, 17))
    assert not torch.equal(selective_copying(5, seed=None)[0], selective_copying(5, seed=None)[0])


@pytest.mark.parametrize("kwargs,name", [
    (dict(n_samples=0), "n_samples"),
    (dict(n_samples=2, seq_len=3, n_tokens_to_copy=4), "seq_len"),
    (dict(n_samples=2, n_tokens_to_copy=0), "n_tokens_to_copy"),
    (dict(n_samples=2, vocab=0), "vocab"),
    (dict(n_samples=2.5), "n_samples"),
    (dict(n_samples=2, seed="x"), "seed"),
])
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        selective_copying(**kwargs)
