"""decodekit-mirostat through its installed entry point, on toy models."""

import math

import decodekit_mirostat
import pytest
import torch

import decodekit
from decodekit.engine import Engine
from decodekit.errors import ConfigError
from decodekit.testing import (
    AttentionModel,
    MarkovModel,
    assert_lossless,
    assert_matches_distribution,
    check_plugin,
    exact_sequence_distribution,
    sample_sequences,
)


def test_registered_through_its_entry_point():
    entry = decodekit.get_registry().strategies["mirostat"]
    assert entry.plugin == "mirostat"
    assert entry.strategy.guarantee == "none"
    info = {p.name: p for p in decodekit.get_plugins()}["mirostat"]
    assert info.version == "0.1.0"


# --8<-- [start:conformance]
def test_plugin_conforms():
    check_plugin(decodekit_mirostat)


def test_high_tau_is_plain_sampling():
    """With tau far above every surprise nothing is cut: the exact target distribution."""
    model = AttentionModel.random(5, seed=3)
    exact = exact_sequence_distribution(model, [0], 3, temperature=0.9)
    counts = sample_sequences(model, [0], length=3, n=3000, strategy="mirostat",
                              tau=1000.0, temperature=0.9, seed=4)
    assert_matches_distribution(counts, exact, alpha=1e-4)
    # the same check through the kit: 3000 samples, chi-square at alpha = 1e-4
    assert_lossless("mirostat", model=model, tau=1000.0, temperature=0.9, seed=4)
# --8<-- [end:conformance]


def test_surprise_tracks_tau():
    """On a 64-token chain of entropy ~4.4 bits, tau=3 holds the surprise near 3 bits.

    (The target must be reachable: the most likely tokens must have surprise below tau.)
    """
    vocab = 64
    model = MarkovModel(torch.randn(vocab, vocab, generator=torch.Generator().manual_seed(0)) * 1.5)
    out = Engine(model).generate([[0]] * 8, strategy="mirostat", tau=3.0, eta=0.2,
                                 max_new_tokens=200, seed=0)
    surprises = []
    for completion in out:
        previous = 0
        for token in completion.token_ids[50:]:
            surprises.append(-float(model.log_probs[previous, token]) / math.log(2))
            previous = token
    plain = -(model.log_probs.exp() * model.log_probs).sum(-1).mean() / math.log(2)
    mean = sum(surprises) / len(surprises)
    assert abs(mean - 3.0) < 0.3, mean
    assert plain > 4.0  # without mirostat the surprise would be near 4.4 bits


def test_invalid_parameters_name_the_field():
    engine = Engine(MarkovModel.random(4))
    with pytest.raises(ConfigError, match=r"params\.tau"):
        engine.generate([[0]], strategy="mirostat", tau=-1)
    with pytest.raises(ConfigError, match=r"params\.eta"):
        engine.generate([[0]], strategy="mirostat", eta=2)
