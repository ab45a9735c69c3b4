"""Stochastic beam search (Kool, van Hoof and Welling, ICML 2019): Gumbel-top-k over sequences.

Perturb the log-probability of every complete sequence with independent Gumbel noise
and keep the ``k`` largest: that is a sample of ``k`` sequences *without replacement*,
in the order a sequential draw would give them (the Gumbel-top-k trick). Stochastic
beam search finds these ``k`` sequences without enumerating them: a node's perturbed
value is the maximum over the perturbed values of the sequences below it, so the
children of a node with value ``T`` get independent Gumbels ``G_i ~ Gumbel(log p_i)``
*conditioned* on their maximum being ``T``:

    G~_i = -log(exp(-T) - exp(-Z) + exp(-G_i)),   Z = max_i G_i

and keeping the ``k`` best nodes at every depth keeps the ``k`` best sequences. A
finished sequence (EOS, a stop string, or the token limit: the loop's own test,
:attr:`DecodeView.would_stop`) is handed to the loop as a row that ends at once, and its
value stays in the beam until ``k`` better ones push it out; :meth:`finalize` ranks the
rows the loop kept by the value kept with each. With ``k = 1`` this is ancestral sampling.

Noise comes from the kernels' counter-based generator
(:func:`decodekit_kernels.gumbel`): one seed per prompt, drawn from the prompt's row
generator at the first step, and a counter per expanded node, so a seed reproduces the
sample on any device and forked rows never share noise.
"""

from __future__ import annotations

import math
from typing import Any

import decodekit_kernels as kernels
import torch

from decodekit.contracts import DecodeView, DraftTree, RowResult, Selection, StepOutput, Verifier
from decodekit_beam.beam import best_rows, ends_row, prompt_rows
from decodekit_beam.params import StochasticBeamParams

__all__ = ["StochasticBeamVerifier", "conditional_gumbel"]


def _log1mexp(a: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(a))`` for ``a <= 0``, accurate near 0 and for very negative ``a``."""
    return torch.where(a > -math.log(2.0), torch.log(-torch.expm1(a)), torch.log1p(-torch.exp(a)))


def conditional_gumbel(perturbed: torch.Tensor, parent: torch.Tensor) -> torch.Tensor:
    """Shift perturbed children so that their maximum equals the parent's value.

    Parameters
    ----------
    perturbed : FloatTensor ``[rows, V]``
        ``log p + Gumbel`` of every child (``-inf`` for impossible children).
    parent : FloatTensor ``[rows]``
        Each row's own perturbed value ``T``.

    Returns
    -------
    FloatTensor ``[rows, V]``
        ``-log(exp(-T) - exp(-Z) + exp(-G))`` with ``Z`` the row maximum, computed
        stably (Kool et al. 2019, appendix B.3); ``-inf`` stays ``-inf``.
    """
    top = perturbed.max(dim=-1, keepdim=True).values
    parent = parent.unsqueeze(-1)
    gap = (perturbed - top).clamp(max=0.0)
    v = parent - perturbed + _log1mexp(gap)
    shifted = parent - torch.relu(v) - torch.log1p(torch.exp(-v.abs()))
    return torch.where(torch.isneginf(perturbed), float("-inf"), shifted)


class StochasticBeamVerifier(Verifier):
    """Samples ``k`` sequences per prompt without replacement (stochastic beam search).

    Parameters
    ----------
    options : StochasticBeamParams, optional
        ``num_beams`` (``k``) and ``temperature`` (of the softmax sampled from).
    context : BuildContext, optional
    warper : Warper, optional
        Unused: the temperature is an option of its own.

    Notes
    -----
    Reported scores are each sequence's log-probability (sum of the tempered,
    processed log-probabilities of its tokens); sequences come in sampling order.
    """

    name = "stochastic_beam"
    Options = StochasticBeamParams  # the verifier protocol: its options are the strategy's

    def __init__(
        self, options: StochasticBeamParams | None = None, *, context: Any = None,
        warper: Any = None,
    ) -> None:
        options = options if options is not None else StochasticBeamParams()
        self.num_beams = options.num_beams
        self.temperature = float(options.temperature)
        self.seeds: dict[int, torch.Tensor] = {}
        self.counters: dict[int, int] = {}
        #: per prompt, the perturbed values of the finished sequences handed to the loop
        #: that are still among the k best nodes
        self.finished: dict[int, list[float]] = {}

    def select(self, view: DecodeView, output: StepOutput, draft: DraftTree | None) -> Selection:
        """Expand every running node with conditioned Gumbels; keep the k best nodes.

        The tensor work is batched over prompts (rows padded to the largest beam); only
        the choice among each prompt's k best nodes loops in Python.
        """
        if draft is not None:
            raise ValueError("stochastic beam search does not verify drafts")
        logp = torch.log_softmax(output.logits[:, 0].double() / self.temperature, dim=-1)
        vocab = logp.shape[-1]
        state = view.row_state or {}
        sums, keys = state.get("log_probs"), state.get("keys")
        groups = list(prompt_rows(view.row_ids).items())
        for prompt, members in groups:
            if prompt not in self.seeds:
                row = members[0]
                self.seeds[prompt] = kernels.seeds_from_generators([view.generators[row]])
                self.counters[prompt] = 0
                self.finished[prompt] = []
        fresh = sums is None  # the first step: one row per prompt, the root
        width = max(len(m) for _, m in groups)
        rows = torch.zeros((len(groups), width), dtype=torch.long)
        valid = torch.zeros((len(groups), width), dtype=torch.bool)
        counters = torch.zeros((len(groups), width), dtype=torch.long)
        for g, (prompt, members) in enumerate(groups):
            rows[g, : len(members)] = torch.tensor(members)
            valid[g, : len(members)] = True
            start = self.counters[prompt]
            counters[g] = torch.arange(start, start + width)
            self.counters[prompt] = start + len(members)
        if fresh:
            base = torch.zeros(rows.shape, dtype=torch.float64)
            parent = torch.zeros(rows.shape, dtype=torch.float64)
        else:
            assert sums is not None and keys is not None
            base, parent = sums[rows], keys[rows]
        base = torch.where(valid, base, float("-inf"))
        seeds = torch.cat([self.seeds[p] for p, _ in groups]).view(-1, 1, 1)
        noise = kernels.gumbel(seeds, counters.unsqueeze(-1), torch.arange(vocab).view(1, 1, -1))
        child_logp = base.unsqueeze(-1) + logp[rows]  # [prompts, width, V]
        perturbed = torch.where(torch.isneginf(child_logp), float("-inf"),
                                child_logp + noise.double())
        children = conditional_gumbel(perturbed, parent).reshape(len(groups), -1)
        done = [self.finished[p] for p, _ in groups]
        most = max(len(d) for d in done)
        finished_keys = torch.full((len(groups), most), float("-inf"), dtype=torch.float64)
        for g, items in enumerate(done):
            finished_keys[g, : len(items)] = torch.tensor(items, dtype=torch.float64)
        pool = torch.cat([children, finished_keys], dim=1)
        values, index = torch.topk(pool, min(self.num_beams, pool.shape[1]), dim=1)
        flat_logp = child_logp.reshape(len(groups), -1)
        chosen: list[tuple[int, int, float, float, bool]] = []  # source, token, sum, key, ends
        for g, (prompt, members) in enumerate(groups):
            kept: list[float] = []
            for value, i in zip(values[g].tolist(), index[g].tolist(), strict=True):
                if value == -math.inf:
                    break
                if i >= children.shape[1]:  # a finished sequence that stays among the k
                    kept.append(value)
                    continue
                source, token = members[i // vocab], i % vocab
                ends = ends_row(view, source, token)
                if ends:
                    kept.append(value)
                chosen.append((source, token, float(flat_logp[g, i]), value, ends))
            self.finished[prompt] = kept
        return Selection(
            tokens=[[c[1]] for c in chosen],
            kept_nodes=[[] for _ in chosen],
            accepted_draft=[0] * len(chosen),
            row_sources=torch.tensor([c[0] for c in chosen], dtype=torch.long),
            scores=torch.tensor([c[2] for c in chosen], dtype=torch.float32),
            finished=[c[4] for c in chosen],
            row_state={
                "log_probs": torch.tensor([c[2] for c in chosen], dtype=torch.float64),
                "keys": torch.tensor([c[3] for c in chosen], dtype=torch.float64),
            },
        )

    def finalize(self, rows: list[RowResult]) -> list[RowResult]:
        """Per prompt, the ``k`` sampled sequences in sampling order, scored by log-probability.

        Every row the loop ended is a complete sequence and takes its place among the k
        by its perturbed value, which the loop kept with the row
        (:attr:`RowResult.state`): the finished sequences this verifier handed over, and
        rows the loop ended itself (a completed constraint; tokens a constraint forced
        have probability one and change neither value).
        """
        return best_rows(
            rows, self.num_beams,
            key=lambda row: row.state.get("keys", -math.inf),
            score=lambda row: row.state.get("log_probs", float(row.score or 0.0)),
        )
