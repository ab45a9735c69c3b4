"""Warping and sampling: from processed logits to a distribution, and to a token.

:class:`Warper` holds the warper settings (temperature, top-k, top-p, min-p, typical-p)
and turns logits into the exact truncated, renormalized distribution the target model
samples from, or draws a token from it with explicit per-row seeds. The per-step tensor
work runs in :mod:`decodekit_kernels`.
"""

from __future__ import annotations

from dataclasses import dataclass

import decodekit_kernels as kernels
import torch

from decodekit.config import SamplingParams

__all__ = ["Warper", "draw_seeds", "draw_uniforms", "inverse_cdf", "typical_filter"]


def draw_uniforms(
    generators: list[torch.Generator], device: torch.device | str = "cpu"
) -> torch.Tensor:
    """One uniform in [0, 1) per row, each from the row's own generator: ``[rows]``.

    The rows' generators are CPU generators; the uniforms are moved to ``device`` (the
    model's), where the probabilities they are compared with live.
    """
    return torch.cat([torch.rand(1, generator=g) for g in generators]).to(device)


def draw_seeds(generators: list[torch.Generator]) -> torch.Tensor:
    """One int64 kernel seed per row, each from the row's own generator: ``[rows]``."""
    return kernels.seeds_from_generators(generators)


def typical_filter(probs: torch.Tensor, mass: float) -> torch.Tensor:
    """Locally typical filtering (Meister et al. 2022) of a distribution ``[..., V]``.

    Keeps the tokens whose surprisal is closest to the entropy until their mass reaches
    ``mass`` (at least one token), plus every token tied with the last one kept (the same
    distance to the entropy), and renormalizes. Keeping ties makes the kept set a function
    of the distribution alone, not of token order; it is transformers' rule too
    (``TypicalLogitsWarper``), and the rule of top-p here.
    """
    if mass >= 1.0:
        return probs
    logp = torch.log(probs.clamp_min(1e-38))
    entropy = -(probs * torch.where(probs > 0, logp, 0.0)).sum(-1, keepdim=True)
    distance = torch.where(probs > 0, (-logp - entropy).abs(), torch.inf)
    sorted_distance, order = distance.sort(dim=-1, stable=True)
    sorted_probs = probs.gather(-1, order)
    before = sorted_probs.cumsum(-1) - sorted_probs
    count = ((before < mass) & (sorted_probs > 0)).sum(-1, keepdim=True).clamp_min(1)
    cut = sorted_distance.gather(-1, count - 1)  # distance of the last token of the prefix
    keep = (distance <= cut) & (probs > 0)
    kept = torch.where(keep, probs, 0.0)
    return kept / kept.sum(-1, keepdim=True)


def inverse_cdf(probs: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Draw one token per row of ``probs [rows, V]`` with ``uniforms [rows]`` in [0, 1).

    The token ``t`` with ``cdf[t-1] <= u * total < cdf[t]`` in vocabulary order; tokens
    of zero probability are never drawn.
    """
    cdf = probs.double().cumsum(-1)
    target = uniforms.double().unsqueeze(-1) * cdf[:, -1:]
    tokens = torch.searchsorted(cdf, target, right=True).squeeze(-1)
    return tokens.clamp_(max=probs.shape[-1] - 1)


@dataclass(frozen=True)
class Warper:
    """Temperature and truncation settings, applied in Hugging Face's order.

    Parameters
    ----------
    temperature : float
        0 means argmax.
    top_k, top_p, min_p, typical_p
        As in :class:`~decodekit.config.SamplingParams`; neutral values turn them off.
    backend : str
        Kernel backend for :func:`decodekit_kernels.sample`.
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    typical_p: float = 1.0
    backend: str = "auto"

    @classmethod
    def from_params(cls, params: SamplingParams, backend: str = "auto") -> Warper:
        """The warper of a strategy's sampling settings."""
        return cls(
            temperature=params.temperature,
            top_k=params.top_k,
            top_p=params.top_p,
            min_p=params.min_p,
            typical_p=params.typical_p,
            backend=backend,
        )

    @property
    def is_greedy(self) -> bool:
        """Whether the distribution is one-hot on the argmax."""
        return self.temperature == 0.0 or self.top_k == 1

    def probs(self, logits: torch.Tensor) -> torch.Tensor:
        """The exact distribution ``[..., V]`` (float32) the settings sample from."""
        shape = logits.shape
        flat = logits.reshape(-1, shape[-1])
        if self.is_greedy:
            out = torch.zeros(flat.shape, dtype=torch.float32, device=flat.device)
            out.scatter_(1, flat.argmax(-1, keepdim=True), 1.0)
            return out.reshape(shape)
        probs = kernels.probs_after_sampling_params(
            flat,
            temperature=self.temperature,
            top_k=self.top_k,
            top_p=self.top_p,
            min_p=self.min_p,
        )
        return typical_filter(probs, self.typical_p).reshape(shape)

    def sample(self, logits: torch.Tensor, seeds: torch.Tensor) -> torch.Tensor:
        """One token per row of ``logits [rows, V]``, drawn with int64 ``seeds [rows]``.

        An exact draw from :meth:`probs` (Gumbel-max with the kernels' counter-based
        noise), so the same seeds give the same tokens on every backend.
        """
        if self.is_greedy:
            return logits.argmax(-1)
        if self.typical_p < 1.0:
            probs = self.probs(logits)
            ids = torch.arange(probs.shape[-1], device=probs.device).unsqueeze(0)
            noise = kernels.gumbel(seeds.to(probs.device).unsqueeze(1), 0, ids)
            scores = torch.where(probs > 0, torch.log(probs) + noise, float("-inf"))
            return scores.argmax(-1)
        return kernels.sample(
            logits,
            seeds,
            temperature=self.temperature,
            top_k=self.top_k,
            top_p=self.top_p,
            min_p=self.min_p,
            backend=self.backend,  # type: ignore[arg-type]
        )
