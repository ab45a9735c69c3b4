"""Beam search strategies for decodekit: ``beam``, ``diverse_beam`` and ``stochastic_beam``.

- ``beam``: deterministic beam search with transformers 5's semantics (length penalty,
  early stopping, several returned sequences per prompt).
- ``diverse_beam``: diverse beam search (Vijayakumar et al. 2016): beams split into
  groups, later groups penalized for choosing the tokens earlier groups chose (Hamming
  diversity).
- ``stochastic_beam``: stochastic beam search (Kool et al. 2019): ``k`` sequences
  sampled without replacement by Gumbel-top-k, with their log-probabilities.

All three are verifiers that fork and reorder the loop's rows through
``Selection.row_sources`` and hand every finished hypothesis to the loop as a row, so the
loop stops it, checks its stop strings and keeps it; a prompt gives several completions
(``num_return_sequences``, or ``k``), each with its ``prompt_index`` and ``score``.

>>> import decodekit
>>> outs = decodekit.generate("Name a colour.", strategy="beam", num_beams=4,
...                           num_return_sequences=2, max_new_tokens=16)
>>> [round(c.score, 2) for c in outs]  # best first
[...]
"""

from __future__ import annotations

from collections.abc import Callable

from decodekit import BuildContext, Guarantee, Pipeline, Strategy, Verifier, hookimpl
from decodekit.verifying import build_verifier
from decodekit_beam.beam import BeamVerifier
from decodekit_beam.exact import inclusion_probabilities, ordered_sample_distribution
from decodekit_beam.params import (
    BeamOptions,
    BeamParams,
    DiverseBeamParams,
    StochasticBeamParams,
)
from decodekit_beam.stochastic import StochasticBeamVerifier, conditional_gumbel

__all__ = [
    "BEAM",
    "DIVERSE_BEAM",
    "STOCHASTIC_BEAM",
    "BeamOptions",
    "BeamParams",
    "BeamVerifier",
    "DiverseBeamParams",
    "StochasticBeamParams",
    "StochasticBeamVerifier",
    "conditional_gumbel",
    "inclusion_probabilities",
    "ordered_sample_distribution",
]


def _build_beam(params: BeamParams, context: BuildContext) -> Pipeline:
    """``beam`` and ``diverse_beam``: the ``beam`` verifier with the strategy's settings."""
    return Pipeline(verifier=build_verifier(BeamVerifier, params.model_dump(), context=context,
                                            where="params."))


def _build_stochastic(params: StochasticBeamParams, context: BuildContext) -> Pipeline:
    return Pipeline(verifier=build_verifier(StochasticBeamVerifier, params, context=context))


BEAM = Strategy(
    name="beam",
    summary="Beam search: the num_beams best partial sequences by log-probability, "
    "length-normalized finished hypotheses (transformers semantics).",
    params=BeamParams,
    guarantee=Guarantee.NONE,
    components=(("verifier", "beam"),),
    build=_build_beam,
)

DIVERSE_BEAM = Strategy(
    name="diverse_beam",
    summary="Diverse beam search (Vijayakumar et al. 2016): beam groups with a Hamming "
    "diversity penalty between groups.",
    params=DiverseBeamParams,
    guarantee=Guarantee.NONE,
    components=(("verifier", "beam"),),
    build=_build_beam,
)

STOCHASTIC_BEAM = Strategy(
    name="stochastic_beam",
    summary="Stochastic beam search (Kool et al. 2019): k sequences sampled without "
    "replacement (Gumbel-top-k) with their log-probabilities.",
    params=StochasticBeamParams,
    guarantee=Guarantee.NONE,
    components=(("verifier", "stochastic_beam"),),
    build=_build_stochastic,
)


@hookimpl
def register_strategies(register: Callable[[Strategy], None]) -> None:
    """Register ``beam``, ``diverse_beam`` and ``stochastic_beam``."""
    register(BEAM)
    register(DIVERSE_BEAM)
    register(STOCHASTIC_BEAM)


@hookimpl
def register_verifiers(register: Callable[[type[Verifier]], None]) -> None:
    """Register the ``beam`` and ``stochastic_beam`` verifiers."""
    register(BeamVerifier)
    register(StochasticBeamVerifier)
