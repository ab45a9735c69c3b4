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
finished sequence (EOS, or the token limit) stays in the beam with its value until ``k``
better ones push it out. With ``k = 1`` this is ancestral sampling.

Noise comes from the kernels' counter-based generator
(:func:`decodekit_kernels.gumbel`): one seed per prompt, drawn from the prompt's row
generator at the first step, and a counter per expanded node, so a seed reproduces the
sample on any device and forked rows never share noise.
"""

from __future__ import annotations

import math

import decodekit_kernels as kernels
import torch

from decodekit.contracts import DecodeView, DraftTree, RowResult, Selection, StepOutput, Verifier
from decodekit_beam.beam import Hypothesis, best_rows, prompt_rows

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
    num_beams : int
        ``k``.
    temperature : float
        Softmax temperature of the distribution sampled from.

    Notes
    -----
    Reported scores are each sequence's log-probability (sum of the tempered,
    processed log-probabilities of its tokens); sequences come in sampling order.
    """

    name = "stochastic_beam"

    def __init__(self, num_beams: int = 4, *, temperature: float = 1.0) -> None:
        if num_beams < 1:
            raise ValueError(f"num_beams must be >= 1, got {num_beams}")
        if not temperature > 0.0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.num_beams = num_beams
        self.temperature = float(temperature)
        self.prompt_ids: dict[int, list[int]] = {}
        self.seeds: dict[int, torch.Tensor] = {}
        self.counters: dict[int, int] = {}
        #: finished sequences per prompt that are still among the k best
        self.finished: dict[int, list[Hypothesis]] = {}

    def select(self, view: DecodeView, output: StepOutput, draft: DraftTree | None) -> Selection:
        """Expand every running node with conditioned Gumbels; keep the k best nodes.

        The tensor work is batched over prompts (rows padded to the largest beam); only
        the choice among each prompt's k best nodes loops in Python.
        """
        if draft is not None:
            raise ValueError("stochastic beam search does not verify drafts")
        eos = view.model.eos_token_ids
        logp = torch.log_softmax(output.logits[:, 0].double() / self.temperature, dim=-1)
        vocab = logp.shape[-1]
        state = view.row_state or {}
        sums, keys = state.get("log_probs"), state.get("keys")
        groups = list(prompt_rows(view.row_ids).items())
        for prompt, members in groups:
            if prompt not in self.prompt_ids:
                row = members[0]
                self.prompt_ids[prompt] = list(view.sequences[row][: view.prompt_lengths[row]])
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
            finished_keys[g, : len(items)] = torch.tensor([h.score for h in items])
        pool = torch.cat([children, finished_keys], dim=1)
        values, index = torch.topk(pool, min(self.num_beams, pool.shape[1]), dim=1)
        flat_logp = child_logp.reshape(len(groups), -1)
        sources: list[int] = []
        tokens: list[list[int]] = []
        new_sums: list[float] = []
        new_keys: list[float] = []
        for g, (prompt, members) in enumerate(groups):
            last = view.budgets is not None and view.budgets[members[0]] <= 1
            kept: list[Hypothesis] = []
            for value, i in zip(values[g].tolist(), index[g].tolist(), strict=True):
                if value == -math.inf:
                    break
                if i >= children.shape[1]:
                    kept.append(done[g][i - children.shape[1]])
                    continue
                source, token = members[i // vocab], i % vocab
                history = view.sequences[source][view.prompt_lengths[source] :]
                log_prob = float(flat_logp[g, i])
                if token in eos or last:
                    reason = "stop" if token in eos else "length"
                    kept.append(Hypothesis(value, [*history, token], log_prob, reason))
                else:
                    sources.append(source)
                    tokens.append([token])
                    new_sums.append(log_prob)
                    new_keys.append(value)
            self.finished[prompt] = kept
        return Selection(
            tokens=tokens,
            kept_nodes=[[] for _ in tokens],
            accepted_draft=[0] * len(tokens),
            row_sources=torch.tensor(sources, dtype=torch.long),
            scores=torch.tensor(new_sums, dtype=torch.float32),
            row_state={
                "log_probs": torch.tensor(new_sums, dtype=torch.float64),
                "keys": torch.tensor(new_keys, dtype=torch.float64),
            },
        )

    def finalize(self, rows: list[RowResult]) -> list[RowResult]:
        """Per prompt, the ``k`` sampled sequences in sampling order, scored by log-probability.

        Rows the loop ended itself (a stop string, a completed constraint) are complete
        sequences too and take their place among the k by their perturbed value, which
        the loop kept with the row (:attr:`RowResult.state`): tokens a constraint forced
        after it have probability one and change neither value.
        """
        passes: dict[int, int] = {}
        ended: dict[int, list[Hypothesis]] = {}
        for row in rows:
            passes[row.prompt_index] = max(passes.get(row.prompt_index, 0), row.forward_passes)
            self.prompt_ids.setdefault(row.prompt_index, list(row.prompt_ids))
            key = row.state.get("keys", -math.inf)
            log_prob = row.state.get("log_probs", float(row.score or 0.0))
            ended.setdefault(row.prompt_index, []).append(
                Hypothesis(key, list(row.token_ids), log_prob, row.finish_reason or "stop")
            )
        candidates = {
            prompt: [*self.finished.get(prompt, []), *ended.get(prompt, [])]
            for prompt in self.prompt_ids
        }
        return best_rows(
            self.prompt_ids, candidates, self.num_beams, passes, score=lambda h: h.log_prob
        )
