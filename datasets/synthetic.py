"""Synthetic sequence tasks with known answers.

``selective_copying`` is the selective copying task of the Mamba paper (Gu & Dao,
2023, section 3.1 and appendix E.1): a few "colour" tokens are scattered at random
positions among noise tokens, and after the sequence the model must repeat the
colours in the order they appeared. Because the spacing is random, a linear
time-invariant model (S4/S4D, a convolution) cannot solve it with a fixed kernel;
it needs input-dependent (selective) dynamics.
"""

from __future__ import annotations

import torch

__all__ = ["selective_copying", "selective_copying_vocab_size", "NOISE_TOKEN"]

NOISE_TOKEN = 0


def selective_copying_vocab_size(vocab: int = 16) -> int:
    """Number of distinct token ids in :func:`selective_copying` inputs: ``vocab + 2``.

    Ids: 0 noise, 1..vocab colours, vocab + 1 the marker.
    """
    return vocab + 2


def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value!r}")
    return value


def selective_copying(n_samples: int, seq_len: int = 64, n_tokens_to_copy: int = 4,
                      vocab: int = 16, seed: int | None = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples of the selective copying task.

    Token layout of one input row (length ``seq_len + n_tokens_to_copy``):

    * positions ``0 .. seq_len - 1``: noise tokens (id 0), except at
      ``n_tokens_to_copy`` distinct positions drawn uniformly at random, which hold
      colour tokens drawn uniformly (with replacement) from ids ``1 .. vocab``;
    * positions ``seq_len .. seq_len + n_tokens_to_copy - 1``: the marker token
      (id ``vocab + 1``), one per token to recall.

    The target row holds the colour tokens in the order they appear. A causal
    model reads the whole row and must emit ``target[j]`` at input position
    ``seq_len + j`` (the j-th marker). There are ``vocab + 2`` token ids in all
    (:func:`selective_copying_vocab_size`).

    Parameters
    ----------
    n_samples : int
        Number of sequences (>= 1).
    seq_len : int
        Length of the noisy part holding the colours (>= n_tokens_to_copy).
    n_tokens_to_copy : int
        Colour tokens per sequence (>= 1).
    vocab : int
        Number of colour tokens (>= 1); 16 in the paper's small setting.
    seed : int or None
        Seed of a private ``torch.Generator`` (None: nondeterministic).

    Returns
    -------
    inputs : int64 tensor, shape (n_samples, seq_len + n_tokens_to_copy)
    targets : int64 tensor, shape (n_samples, n_tokens_to_copy), values in 1..vocab

    Examples
    --------
    >>> x, y = selective_copying(2, seq_len=8, n_tokens_to_copy=2, vocab=4, seed=0)
    >>> x.shape, y.shape
    (torch.Size([2, 10]), torch.Size([2, 2]))
    >>> bool((x[:, -2:] == 5).all())
    True
    """
    _check_int(n_samples, "n_samples", 1)
    _check_int(n_tokens_to_copy, "n_tokens_to_copy", 1)
    _check_int(vocab, "vocab", 1)
    _check_int(seq_len, "seq_len", 1)
    if seq_len < n_tokens_to_copy:
        raise ValueError(f"seq_len: must be >= n_tokens_to_copy={n_tokens_to_copy} so every colour "
                         f"gets its own position, got {seq_len}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"seed: expected an int or None, got {seed!r}")
    gen = torch.Generator()
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(seed)
    k = n_tokens_to_copy
    pos = torch.rand(n_samples, seq_len, generator=gen).argsort(dim=1)[:, :k]  # (n, k) distinct
    pos = pos.sort(dim=1).values  # (n, k), in order of appearance
    targets = torch.randint(1, vocab + 1, (n_samples, k), generator=gen)  # (n, k)
    inputs = torch.full((n_samples, seq_len + k), NOISE_TOKEN, dtype=torch.int64)
    inputs.scatter_(1, pos, targets)  # colours at their positions
    inputs[:, seq_len:] = vocab + 1  # the markers
    return inputs, targets
