"""Mirostat 2.0 sampling (Basu et al., 2021) as a decodekit plugin.

Mirostat keeps the surprise (negative log2-probability) of generated tokens near a target
``tau``. Each row holds a threshold ``mu``, starting at ``2 * tau``: tokens whose surprise
exceeds ``mu`` are cut, a token is drawn from the rest, and ``mu`` moves by
``eta * (tau - observed surprise)``. Low ``tau`` gives focused text, high ``tau`` diverse
text; with ``tau`` far above the model's surprises nothing is cut and it is plain sampling.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from pydantic import Field

from decodekit import (
    DecodeView,
    DraftTree,
    Guarantee,
    Pipeline,
    Selection,
    StepOutput,
    Strategy,
    StrategyParams,
    Verifier,
    hookimpl,
)
from decodekit.sampling import draw_uniforms, inverse_cdf

__all__ = ["MIROSTAT", "MirostatParams", "MirostatVerifier"]


# --8<-- [start:params]
class MirostatParams(StrategyParams):
    """Parameters of ``mirostat``."""

    tau: float = Field(5.0, gt=0.0, description="Target surprise in bits per token.")
    eta: float = Field(0.1, gt=0.0, le=1.0, description="Learning rate of the threshold mu.")
    temperature: float = Field(1.0, gt=0.0, description="Softmax temperature before truncation.")
# --8<-- [end:params]


# --8<-- [start:verifier]
class MirostatVerifier(Verifier):
    """Draws each row's token from the tokens whose surprise is at most the row's ``mu``.

    Parameters
    ----------
    options : MirostatParams, optional
        ``tau``, ``eta`` and ``temperature``; the defaults when omitted.
    context : BuildContext, optional
    warper : Warper, optional
        Unused: mirostat truncates by surprise, not by the usual sampling settings.
    """

    name = "mirostat"
    Options = MirostatParams  # the verifier protocol: its options are the strategy's

    def __init__(
        self, options: MirostatParams | None = None, *, context: Any = None, warper: Any = None
    ) -> None:
        options = options if options is not None else MirostatParams()
        self.tau, self.eta, self.temperature = options.tau, options.eta, options.temperature
        self.mu: torch.Tensor | None = None  # [rows], created at the first step

    def truncated(self, logits: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
        """Probabilities ``[rows, V]`` with tokens of surprise above ``mu`` removed."""
        probs = torch.softmax(logits.float() / self.temperature, dim=-1)
        surprise = -torch.log2(probs.clamp_min(1e-45))
        keep = surprise <= mu.unsqueeze(1)
        keep.scatter_(1, probs.argmax(-1, keepdim=True), True)  # always keep the mode
        kept = torch.where(keep, probs, 0.0)
        return kept / kept.sum(-1, keepdim=True)

    def select(self, view: DecodeView, output: StepOutput, draft: DraftTree | None) -> Selection:
        """Sample one token per row and update each row's ``mu``."""
        if draft is not None:
            raise ValueError("mirostat does not verify drafts")
        logits = output.logits[:, 0]
        if self.mu is None:
            self.mu = torch.full((logits.shape[0],), 2.0 * self.tau, device=logits.device)
        probs = self.truncated(logits, self.mu)
        tokens = inverse_cdf(probs, draw_uniforms(view.generators, logits.device))
        # surprise under the model's own distribution: that is what mu bounds and tau targets
        model_probs = torch.softmax(logits.float() / self.temperature, dim=-1)
        observed = -torch.log2(model_probs.gather(1, tokens.unsqueeze(1)).squeeze(1))
        self.mu = self.mu - self.eta * (observed - self.tau)
        return Selection.single(tokens.tolist())

    def select_rows(self, rows: torch.Tensor) -> None:
        """Keep each remaining row's ``mu``."""
        if self.mu is not None:
            self.mu = self.mu.index_select(0, rows)


# --8<-- [end:verifier]


# --8<-- [start:strategy]
def _build(params: MirostatParams, context: object) -> Pipeline:
    return Pipeline(verifier=MirostatVerifier(params, context=context))


MIROSTAT = Strategy(
    name="mirostat",
    summary="Mirostat 2.0: sampling that keeps surprise near a target tau.",
    params=MirostatParams,
    guarantee=Guarantee.NONE,
    components=(("verifier", "mirostat"),),
    build=_build,
)


@hookimpl
def register_strategies(register: Callable[[Strategy], None]) -> None:
    """Register ``mirostat``."""
    register(MIROSTAT)


@hookimpl
def register_verifiers(register: Callable[[type[Verifier]], None]) -> None:
    """Register the ``mirostat`` verifier."""
    register(MirostatVerifier)
# --8<-- [end:strategy]
