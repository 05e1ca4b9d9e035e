"""Demonstration losses of CQN's RLBench code, as pure functions: on the bins a demonstration
(a dataset transition) chose, level by level and dimension by dimension, the critic's value
should lead every other bin by a margin, and the distributional critic's return distribution
should dominate every other bin's at first order. Both are averaged over the demo-flagged
samples of a batch.

Over the bins, CQN's code takes the mean over all B of them, the demonstrated bin's own term
included (the margin itself for the margin loss, 0 for the dominance loss): `over="all"`, the
default. `over="others"` averages over the B - 1 other bins only, which is the same pull scaled
by B / (B - 1) (and the margin loss without its constant margin / B).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _chosen(values: jax.Array, choice: jax.Array) -> jax.Array:
    """values [..., B, *rest] at bin `choice` [...] -> [..., *rest]."""
    index = choice.reshape(choice.shape + (1,) * (values.ndim - choice.ndim))
    return jnp.take_along_axis(values, index, axis=choice.ndim).squeeze(choice.ndim)


#: how the per-bin terms are averaged (module docstring)
BIN_MEANS = ("all", "others")


def _bin_mean(terms: jax.Array, choice: jax.Array, over: str) -> jax.Array:
    """Mean of terms [..., B] over all bins, or over the bins other than `choice` [...]."""
    if over == "all":
        return jnp.mean(terms, axis=-1)
    if over != "others":
        raise ValueError(f"over must be one of {BIN_MEANS}, got {over!r}")
    others = jnp.arange(terms.shape[-1]) != choice[..., None]
    return jnp.sum(jnp.where(others, terms, 0.0), axis=-1) / (terms.shape[-1] - 1)


def margin_loss(q: jax.Array, choice: jax.Array, margin: float, over: str = "all") -> jax.Array:
    """max(0, margin - (Q(b_e) - Q(b))) averaged over the bins b (`over`: all of them, b_e's
    constant `margin` included, as CQN's code, or the others): values q [..., B], choice [...]
    int -> [...]. Smallest (margin / B for "all", 0 for "others") once b_e leads every other bin
    by `margin` (CQN's code: 0.01)."""
    gap = _chosen(q, choice)[..., None] - q
    return _bin_mean(jnp.maximum(margin - gap, 0.0), choice, over)


def fosd_loss(logits: jax.Array, choice: jax.Array, over: str = "all") -> jax.Array:
    """First-order stochastic dominance of the demonstrated bin's return distribution:
    sum over atoms of max(0, CDF_{b_e}(z) - CDF_b(z)), averaged over the bins b (`over`: all,
    b_e's zero included, as CQN's code, or the others). logits [..., B, A], choice [...] int ->
    [...]. Zero when b_e's distribution puts no more mass at or below any atom than any other
    bin's does."""
    cdf = jnp.cumsum(jax.nn.softmax(logits, axis=-1), axis=-1)  # [..., B, A]
    expert = _chosen(cdf, choice)[..., None, :]  # [..., 1, A]
    excess = jnp.sum(jnp.maximum(expert - cdf, 0.0), axis=-1)  # [..., B]
    return _bin_mean(excess, choice, over)


def demo_mean(per_sample: jax.Array, demo: jax.Array) -> jax.Array:
    """Mean of per_sample [batch] over the demo-flagged samples (demo [batch], 1 for a
    demonstration); 0 when the batch has none."""
    flags = demo.astype(per_sample.dtype)
    return jnp.sum(flags * per_sample) / jnp.maximum(jnp.sum(flags), 1.0)
