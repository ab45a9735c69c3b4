"""Test kit: toy models with exactly known distributions, and distribution checks.

Use it in a plugin's own test suite to prove what a strategy claims:

>>> from decodekit.testing import AttentionModel, exact_sequence_distribution, sample_sequences
>>> model = AttentionModel.random(vocab_size=4, seed=0)
>>> exact = exact_sequence_distribution(model, prompt=[0], length=3, temperature=0.8)
>>> samples = sample_sequences(model, [0], length=3, n=4000, strategy="sample",
...                            temperature=0.8, seed=1)
>>> assert_matches_distribution(samples, exact, alpha=1e-4)   # chi-square test

One concern per module:

- :mod:`~decodekit.testing.models`: :class:`AttentionModel`, a one-layer attention model
  in float64 that the decode loop drives like a real model (token trees, positions, KV
  cache with holes), whose logits are recomputed exactly from scratch for any sequence;
  :class:`MarkovModel`, a first-order Markov chain (blind to positions, masks and the
  cache); :func:`tiny_llama`, a tiny random Hugging Face Llama.
- :mod:`~decodekit.testing.reference`: the reference penalties and warpers, written for
  clarity (float64, plain loops) and independent of the kernels the strategies use.
- :mod:`~decodekit.testing.distributions`: exact output distributions by full
  recomputation (no cache, no tree): the ground truth.
- :mod:`~decodekit.testing.stats`: sampling outputs, chi-square and total variation.
- :mod:`~decodekit.testing.registration`: :func:`registered_plugin`.
- :mod:`~decodekit.testing.conformance`: :func:`check_plugin`, :func:`assert_lossless`,
  :func:`assert_greedy_equivalent`.
"""

from __future__ import annotations

from decodekit.testing.conformance import (
    PluginCheckError,
    PluginReport,
    assert_greedy_equivalent,
    assert_lossless,
    check_plugin,
)
from decodekit.testing.distributions import exact_sequence_distribution, next_token_logits
from decodekit.testing.models import AttentionCache, AttentionModel, MarkovModel, tiny_llama
from decodekit.testing.reference import reference_penalties, reference_warp
from decodekit.testing.registration import registered_plugin
from decodekit.testing.stats import (
    ChiSquareResult,
    assert_matches_distribution,
    chi2_sf,
    chi_square_test,
    sample_sequences,
    total_variation,
)

__all__ = [
    "AttentionCache",
    "AttentionModel",
    "ChiSquareResult",
    "MarkovModel",
    "PluginCheckError",
    "PluginReport",
    "assert_greedy_equivalent",
    "assert_lossless",
    "assert_matches_distribution",
    "check_plugin",
    "chi2_sf",
    "chi_square_test",
    "exact_sequence_distribution",
    "next_token_logits",
    "reference_penalties",
    "reference_warp",
    "registered_plugin",
    "sample_sequences",
    "tiny_llama",
    "total_variation",
]
