"""Parameter models of ``beam``, ``diverse_beam`` and ``stochastic_beam``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from decodekit.config import StrategyParams

__all__ = [
    "BeamOptions",
    "BeamParams",
    "DiverseBeamParams",
    "EarlyStopping",
    "StochasticBeamParams",
]

#: ``True``: stop a prompt as soon as ``num_beams`` hypotheses are finished; ``False``:
#: stop when the best running beam, at its current length, cannot beat the worst finished
#: hypothesis; ``"never"``: the same test at the longest length still possible (when
#: ``length_penalty > 0``), i.e. the canonical beam search. As in transformers.
EarlyStopping = bool | Literal["never"]


class BeamParams(StrategyParams):
    """Parameters of ``beam`` (transformers' ``generate(num_beams=..., do_sample=False)``)."""

    num_beams: int = Field(4, ge=1, description="Beams kept per prompt (1 is greedy).")
    length_penalty: float = Field(
        1.0,
        description=(
            "Finished scores are sum(log p) / length ** length_penalty (length counts the "
            "generated tokens, EOS included); > 0 favours longer outputs."
        ),
    )
    early_stopping: EarlyStopping = Field(
        False, description="When a prompt stops: true, false or 'never' (as in transformers)."
    )
    num_return_sequences: int = Field(
        1, ge=1, description="Best finished hypotheses returned per prompt (<= num_beams)."
    )

    @model_validator(mode="after")
    def _returns_at_most_beams(self) -> BeamParams:
        if self.num_return_sequences > self.num_beams:
            raise ValueError(
                f"num_return_sequences ({self.num_return_sequences}) must be <= num_beams "
                f"({self.num_beams})"
            )
        return self


class DiverseBeamParams(BeamParams):
    """Parameters of ``diverse_beam`` (Vijayakumar et al. 2016, Hamming diversity)."""

    num_groups: int = Field(
        2, ge=1, description="Groups the beams are split into (must divide num_beams)."
    )
    diversity_penalty: float = Field(
        0.5,
        ge=0.0,
        description=(
            "Subtracted from a token's log-probability once per beam of an earlier group "
            "that chose the same token at this step (Hamming diversity); 0 turns it off."
        ),
    )

    @model_validator(mode="after")
    def _groups_divide_beams(self) -> DiverseBeamParams:
        if self.num_beams % self.num_groups != 0:
            raise ValueError(
                f"num_groups ({self.num_groups}) must divide num_beams ({self.num_beams})"
            )
        return self


class BeamOptions(DiverseBeamParams):
    """Options of the ``beam`` verifier: one group and no diversity penalty by default.

    ``beam`` builds it from :class:`BeamParams` (one group), ``diverse_beam`` from
    :class:`DiverseBeamParams`.
    """

    num_groups: int = Field(
        1, ge=1, description="Groups the beams are split into (must divide num_beams)."
    )
    diversity_penalty: float = Field(
        0.0, ge=0.0, description="Hamming diversity strength between groups; 0 turns it off."
    )


class StochasticBeamParams(StrategyParams):
    """Parameters of ``stochastic_beam`` (Kool et al. 2019, Gumbel-top-k)."""

    num_beams: int = Field(
        4, ge=1, description="k: sequences sampled without replacement per prompt."
    )
    temperature: float = Field(
        1.0, gt=0.0, description="Softmax temperature of the distribution sampled from."
    )
