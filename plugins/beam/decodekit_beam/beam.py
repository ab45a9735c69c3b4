"""Beam search and diverse (group) beam search as one verifier.

The decode loop holds the running beams as rows. At the first step each prompt's single
row is forked into its beams (``Selection.row_sources`` with repeats); afterwards every
step replaces each prompt's rows by the best continuations of all of them. A
continuation that would end its row (EOS, a stop string or the token limit: the loop's
own test, :attr:`DecodeView.would_stop`) is a finished hypothesis: the verifier hands it
to the loop as a row of its own, which the loop ends, cuts at its stop string and keeps
with its score; :meth:`BeamVerifier.finalize` ranks the rows the loop kept. When a prompt
is done (early stopping), its running rows simply leave the batch.

The semantics follow transformers 5's ``_beam_search`` step for step:

- candidates are the top ``K = max(2, 1 + n_eos) * beams`` of ``score + log p`` over
  every beam and token (``log p`` is the log-softmax of the processed logits);
- a candidate that hits a stopping criterion (EOS, a stop string, the token limit) is
  finished only if it is among the top ``beams`` candidates; its score is
  ``sum log p / length ** length_penalty``, ``length`` counting generated tokens, EOS
  included; the best ``beams`` finished hypotheses are kept;
- the running beams are the top ``beams`` candidates that did not finish;
- a prompt stops when ``early_stopping`` is true and ``beams`` hypotheses are finished,
  or, otherwise, when ``beams`` hypotheses are finished and the best running beam's
  score divided by ``L ** length_penalty`` cannot beat the worst of them (``L``: the
  current length, or the longest possible one for ``"never"`` with a positive penalty).

Diverse beam search (Vijayakumar et al. 2016) splits the beams into groups, run one
after the other within a step: group ``g`` subtracts ``diversity_penalty`` times the
number of beams of groups ``< g`` that chose a token at this step from that token's
log-probability (Hamming diversity, as transformers' group beam search did). Each group
is a beam search of its own (its own finished hypotheses and stopping test); the result
is the best hypotheses over all groups.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch

from decodekit.contracts import DecodeView, DraftTree, RowResult, Selection, StepOutput, Verifier
from decodekit_beam.params import BeamOptions

__all__ = ["BeamVerifier", "best_rows", "ends_row", "prompt_rows"]


def best_rows(
    rows: list[RowResult],
    count: int,
    *,
    key: Callable[[RowResult], float],
    score: Callable[[RowResult], float],
) -> list[RowResult]:
    """The ``count`` best finished rows of every prompt, best first, prompts in order.

    Parameters
    ----------
    rows : list of RowResult
        Every row the loop ended, in the order they ended (ties keep that order).
    count : int
        How many to report per prompt.
    key : callable
        The value rows are ranked by.
    score : callable
        The score a reported row carries.

    Returns
    -------
    list of RowResult
        Copies of the chosen rows, each with its score and the forwards its prompt took
        part in.
    """
    passes: dict[int, int] = {}
    by_prompt: dict[int, list[RowResult]] = {}
    for row in rows:
        passes[row.prompt_index] = max(passes.get(row.prompt_index, 0), row.forward_passes)
        by_prompt.setdefault(row.prompt_index, []).append(row)
    results = []
    for prompt in sorted(by_prompt):
        for row in sorted(by_prompt[prompt], key=key, reverse=True)[:count]:
            results.append(replace(row, score=score(row), forward_passes=passes[prompt]))
    return results


def prompt_rows(row_ids: list[int]) -> dict[int, list[int]]:
    """Row indices per prompt, prompts in order of first appearance."""
    groups: dict[int, list[int]] = {}
    for r, prompt in enumerate(row_ids):
        groups.setdefault(prompt, []).append(r)
    return groups


def ends_row(view: DecodeView, row: int, token: int) -> bool:
    """Whether committing ``token`` to ``row`` ends it (the loop's own stop test)."""
    if view.would_stop is None:
        raise ValueError("beam search needs DecodeView.would_stop, which the decode loop sets")
    return view.would_stop(row, [token]) is not None


class BeamVerifier(Verifier):
    """Beam search (``num_groups=1``) or diverse beam search over the loop's rows.

    Parameters
    ----------
    options : BeamOptions, optional
        ``num_beams`` (beams per prompt, over all groups), ``length_penalty`` (exponent
        of the length normalization of finished scores), ``early_stopping`` (the
        stopping rule, as in transformers), ``num_return_sequences`` (hypotheses
        reported per prompt, best first), ``num_groups`` (groups of
        ``num_beams // num_groups`` beams: diverse beam search when > 1) and
        ``diversity_penalty`` (Hamming diversity strength between groups).
    context : BuildContext, optional
    warper : Warper, optional
        Unused: beam search does not sample.
    """

    name = "beam"
    Options = BeamOptions

    def __init__(
        self, options: BeamOptions | None = None, *, context: Any = None, warper: Any = None
    ) -> None:
        options = options if options is not None else BeamOptions()
        self.num_beams = options.num_beams
        self.group_size = options.num_beams // options.num_groups
        self.num_groups = options.num_groups
        self.length_penalty = float(options.length_penalty)
        self.early_stopping = options.early_stopping
        self.num_return_sequences = options.num_return_sequences
        self.diversity_penalty = float(options.diversity_penalty)
        #: per (prompt, group), the normalized scores of the best finished hypotheses
        #: handed to the loop, best first, at most ``group_size`` (the stopping test's)
        self.finished: dict[tuple[int, int], list[float]] = {}

    # ------------------------------------------------------------------ one step
    def select(self, view: DecodeView, output: StepOutput, draft: DraftTree | None) -> Selection:
        """Expand every running beam; return the next running beams and the new finished ones."""
        if draft is not None:
            raise ValueError("beam search does not verify drafts")
        logp = torch.log_softmax(output.logits[:, 0].float(), dim=-1)  # [rows, V]
        vocab = logp.shape[-1]
        state = view.row_state
        first = state is None  # the prompt's step: one row per prompt
        chosen: list[tuple[int, int, float, int, bool]] = []  # source, token, score, group, ends
        for prompt, rows in prompt_rows(view.row_ids).items():
            chosen_now: list[int] = []  # tokens the earlier groups' beams chose at this step
            for group in range(self.num_groups):
                if first:
                    members, base = rows[:1], torch.zeros(1)
                else:
                    assert state is not None
                    members = [r for r in rows if int(state["groups"][r]) == group]
                    base = state["scores"][members].float()
                if not members:
                    continue  # this group is done
                group_logp = logp[members]
                if self.diversity_penalty and chosen_now:
                    counts = torch.bincount(torch.tensor(chosen_now), minlength=vocab)
                    group_logp = group_logp - self.diversity_penalty * counts.to(group_logp.dtype)
                running, ended = self._expand(view, prompt, group, members, base, group_logp)
                chosen += [(s, t, v, group, False) for s, t, v in running]
                chosen += [(s, t, v, group, True) for s, t, v in ended]
                chosen_now += [t for _, t, _ in running]
        scores = torch.tensor([c[2] for c in chosen], dtype=torch.float32)
        return Selection(
            tokens=[[c[1]] for c in chosen],
            kept_nodes=[[] for _ in chosen],
            accepted_draft=[0] * len(chosen),
            row_sources=torch.tensor([c[0] for c in chosen], dtype=torch.long),
            scores=scores,
            finished=[c[4] for c in chosen],
            row_state={
                "scores": scores,
                "groups": torch.tensor([c[3] for c in chosen], dtype=torch.long),
            },
        )

    def _expand(
        self,
        view: DecodeView,
        prompt: int,
        group: int,
        members: list[int],
        base: torch.Tensor,
        logp: torch.Tensor,
    ) -> tuple[list[tuple[int, int, float]], list[tuple[int, int, float]]]:
        """One group's step: its running beams and its new finished hypotheses.

        Both as (source row, token, summed log-probability). No running beams means the
        group is done (its rows leave the batch).
        """
        beams = self.group_size
        vocab = logp.shape[-1]
        row = members[0]
        generated = len(view.sequences[row]) - view.prompt_lengths[row] + 1  # with the new token
        budget = view.budgets[row] if view.budgets is not None else None
        accumulated = (base.unsqueeze(1) + logp).reshape(-1)  # [members * V], float32
        k = min(max(2, 1 + len(view.model.eos_token_ids)) * beams, accumulated.numel())
        top_values, top_index = torch.topk(accumulated, k)
        normalized = (top_values / (generated**self.length_penalty)).tolist()
        best = self.finished.setdefault((prompt, group), [])
        running: list[tuple[int, int, float]] = []
        ended: list[tuple[int, int, float]] = []
        candidates = zip(top_values.tolist(), top_index.tolist(), strict=True)
        for i, (value, index) in enumerate(candidates):
            if value == -math.inf:
                break
            source, token = members[index // vocab], index % vocab
            if ends_row(view, source, token):
                # only the top `beams` candidates may finish, and only into the best `beams`
                if i < beams and (len(best) < beams or normalized[i] > best[-1]):
                    ended.append((source, token, value))
                    best.append(normalized[i])
                    best.sort(reverse=True)
                    del best[beams:]
            elif len(running) < beams:
                running.append((source, token, value))
        if not running or self._done(best, running[0][2], generated, budget):
            return [], ended
        return running, ended

    def _done(
        self, finished: list[float], best_running: float, length: int, budget: int | None
    ) -> bool:
        """Whether no running beam of a group can still enter its finished hypotheses."""
        if len(finished) < self.group_size:
            return False
        if self.early_stopping is True:
            return True
        penalty = self.length_penalty
        if self.early_stopping == "never" and penalty > 0.0 and budget is not None:
            length = length + budget - 1  # the longest length still possible
        best = torch.tensor(best_running, dtype=torch.float32) / (length**penalty)
        return not bool(best > finished[-1])

    # ------------------------------------------------------------------ results
    def finalize(self, rows: list[RowResult]) -> list[RowResult]:
        """The best ``num_return_sequences`` finished rows per prompt, best first.

        Every row the loop ended is a hypothesis, scored by its summed log-probability
        over its length to the power ``length_penalty`` (in float32, as transformers
        does): the finished hypotheses this verifier handed over, and rows the loop
        ended itself (a completed constraint).
        """
        return best_rows(
            rows, self.num_return_sequences, key=self._normalized, score=self._normalized
        )

    def _normalized(self, row: RowResult) -> float:
        if row.score is None:
            return -math.inf
        length = max(len(row.token_ids), 1)
        return float(torch.tensor(row.score, dtype=torch.float32) / length**self.length_penalty)
