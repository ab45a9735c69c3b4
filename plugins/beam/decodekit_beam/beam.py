"""Beam search and diverse (group) beam search as one verifier.

The decode loop holds the running beams as rows. At the first step each prompt's single
row is forked into its beams (``Selection.row_sources`` with repeats); afterwards every
step replaces each prompt's rows by the best continuations of all of them. Finished
hypotheses (a continuation that ends in EOS, or reaches the token limit) never become
rows: the verifier keeps them and reports the best in :meth:`BeamVerifier.finalize`.
When a prompt is done (early stopping), its rows simply leave the batch.

The semantics follow transformers 5's ``_beam_search`` step for step:

- candidates are the top ``K = max(2, 1 + n_eos) * beams`` of ``score + log p`` over
  every beam and token (``log p`` is the log-softmax of the processed logits);
- a candidate that hits EOS (or the token limit) is finished only if it is among the
  top ``beams`` candidates; its score is ``sum log p / length ** length_penalty``,
  ``length`` counting generated tokens, EOS included; the best ``beams`` finished
  hypotheses are kept;
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
from dataclasses import dataclass, field

import torch

from decodekit.contracts import DecodeView, DraftTree, RowResult, Selection, StepOutput, Verifier

__all__ = ["BeamVerifier", "Hypothesis"]


@dataclass(order=True)
class Hypothesis:
    """A finished sequence of one prompt.

    Attributes
    ----------
    score : float
        The value it is ranked by (beam search: the length-normalized score).
    token_ids : list of int
        Generated tokens (EOS included when it ended the sequence).
    log_prob : float
        Sum of the (processed) log-probabilities of its tokens.
    finish_reason : str
        ``"stop"`` or ``"length"``.
    """

    score: float
    token_ids: list[int] = field(compare=False)
    log_prob: float = field(compare=False)
    finish_reason: str = field(compare=False)


def best_rows(
    prompt_ids: dict[int, list[int]],
    hypotheses: dict[int, list[Hypothesis]],
    count: int,
    passes: dict[int, int],
    *,
    score: Callable[[Hypothesis], float],
) -> list[RowResult]:
    """The ``count`` best hypotheses of every prompt, as rows to report, best first.

    Parameters
    ----------
    prompt_ids : dict of int to list of int
        Each prompt's token ids, by prompt index.
    hypotheses : dict of int to list of Hypothesis
        Candidates per prompt, in any order (ranked by ``Hypothesis`` ordering).
    count : int
        How many to report per prompt.
    passes : dict of int to int
        Forwards each prompt took part in.
    score : callable
        The score a row reports for its hypothesis.
    """
    results = []
    for prompt in sorted(prompt_ids):
        for hypothesis in sorted(hypotheses.get(prompt, []), reverse=True)[:count]:
            results.append(
                RowResult(
                    prompt_index=prompt,
                    prompt_ids=list(prompt_ids[prompt]),
                    token_ids=list(hypothesis.token_ids),
                    finish_reason=hypothesis.finish_reason,
                    forward_passes=passes.get(prompt, len(hypothesis.token_ids)),
                    score=score(hypothesis),
                )
            )
    return results


def prompt_rows(row_ids: list[int]) -> dict[int, list[int]]:
    """Row indices per prompt, prompts in order of first appearance."""
    groups: dict[int, list[int]] = {}
    for r, prompt in enumerate(row_ids):
        groups.setdefault(prompt, []).append(r)
    return groups


class BeamVerifier(Verifier):
    """Beam search (``num_groups=1``) or diverse beam search over the loop's rows.

    Parameters
    ----------
    num_beams : int
        Beams per prompt, over all groups.
    length_penalty : float
        Exponent of the length normalization of finished scores.
    early_stopping : bool or "never"
        Stopping rule, as in transformers.
    num_return_sequences : int
        Hypotheses reported per prompt, best first.
    num_groups : int
        Groups of ``num_beams // num_groups`` beams (diverse beam search when > 1).
    diversity_penalty : float
        Hamming diversity strength between groups.
    """

    name = "beam"

    def __init__(
        self,
        num_beams: int = 4,
        *,
        length_penalty: float = 1.0,
        early_stopping: bool | str = False,
        num_return_sequences: int = 1,
        num_groups: int = 1,
        diversity_penalty: float = 0.0,
    ) -> None:
        if num_beams < 1:
            raise ValueError(f"num_beams must be >= 1, got {num_beams}")
        if num_groups < 1 or num_beams % num_groups:
            raise ValueError(f"num_groups ({num_groups}) must divide num_beams ({num_beams})")
        if not 1 <= num_return_sequences <= num_beams:
            raise ValueError(
                f"num_return_sequences ({num_return_sequences}) must be in 1..num_beams "
                f"({num_beams})"
            )
        if early_stopping not in (True, False, "never"):
            raise ValueError(
                f"early_stopping must be true, false or 'never', got {early_stopping!r}"
            )
        self.num_beams = num_beams
        self.group_size = num_beams // num_groups
        self.num_groups = num_groups
        self.length_penalty = float(length_penalty)
        self.early_stopping = early_stopping
        self.num_return_sequences = num_return_sequences
        self.diversity_penalty = float(diversity_penalty)
        #: finished hypotheses per (prompt, group), best first, at most ``group_size``
        self.hypotheses: dict[tuple[int, int], list[Hypothesis]] = {}
        self.prompt_ids: dict[int, list[int]] = {}
        self.eos: frozenset[int] = frozenset()

    # ------------------------------------------------------------------ one step
    def select(self, view: DecodeView, output: StepOutput, draft: DraftTree | None) -> Selection:
        """Expand every running beam, finish hypotheses, choose the next running beams."""
        if draft is not None:
            raise ValueError("beam search does not verify drafts")
        self.eos = view.model.eos_token_ids
        logp = torch.log_softmax(output.logits[:, 0].float(), dim=-1)  # [rows, V]
        vocab = logp.shape[-1]
        state = view.row_state or {}
        scores, groups = state.get("scores"), state.get("groups")
        sources: list[int] = []
        tokens: list[list[int]] = []
        new_scores: list[float] = []
        new_groups: list[int] = []
        for prompt, rows in prompt_rows(view.row_ids).items():
            first = prompt not in self.prompt_ids
            if first:
                head = rows[0]
                self.prompt_ids[prompt] = list(view.sequences[head][: view.prompt_lengths[head]])
            chosen_now: list[int] = []  # tokens the earlier groups chose at this step
            for group in range(self.num_groups):
                if first:
                    members, base = rows[:1], torch.zeros(1)
                else:
                    assert scores is not None and groups is not None
                    members = [r for r in rows if int(groups[r]) == group]
                    base = scores[members]
                if not members:
                    continue  # this group is done
                group_logp = logp[members]
                if self.diversity_penalty and chosen_now:
                    counts = torch.bincount(torch.tensor(chosen_now), minlength=vocab)
                    group_logp = group_logp - self.diversity_penalty * counts.to(group_logp.dtype)
                running = self._expand(view, prompt, group, members, base, group_logp)
                for source, token, score in running:
                    sources.append(source)
                    tokens.append([token])
                    new_scores.append(score)
                    new_groups.append(group)
                    chosen_now.append(token)
        return Selection(
            tokens=tokens,
            kept_nodes=[[] for _ in tokens],
            accepted_draft=[0] * len(tokens),
            row_sources=torch.tensor(sources, dtype=torch.long),
            scores=torch.tensor(new_scores, dtype=torch.float32),
            row_state={
                "scores": torch.tensor(new_scores, dtype=torch.float32),
                "groups": torch.tensor(new_groups, dtype=torch.long),
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
    ) -> list[tuple[int, int, float]]:
        """One group's step: returns its running beams as (source row, token, score).

        An empty list means the group is done (its rows leave the batch).
        """
        beams = self.group_size
        vocab = logp.shape[-1]
        row = members[0]
        generated = len(view.sequences[row]) - view.prompt_lengths[row] + 1  # with the new token
        budget = view.budgets[row] if view.budgets is not None else None
        last = budget is not None and budget <= 1
        accumulated = (base.unsqueeze(1) + logp).reshape(-1)  # [members * V], float32
        k = min(max(2, 1 + len(self.eos)) * beams, accumulated.numel())
        top_values, top_index = torch.topk(accumulated, k)
        normalized = top_values / (generated**self.length_penalty)
        finished = self.hypotheses.setdefault((prompt, group), [])
        running: list[tuple[int, int, float]] = []
        candidates = zip(top_values.tolist(), top_index.tolist(), strict=True)
        for i, (value, index) in enumerate(candidates):
            if value == -math.inf:
                break
            source, token = members[index // vocab], index % vocab
            if token in self.eos or last:
                if i < beams:  # only the top `beams` candidates may finish
                    history = view.sequences[source][view.prompt_lengths[source] :]
                    finished.append(
                        Hypothesis(
                            score=float(normalized[i]),
                            token_ids=[*history, token],
                            log_prob=value,
                            finish_reason="stop" if token in self.eos else "length",
                        )
                    )
            elif len(running) < beams:
                running.append((source, token, value))
        finished.sort(reverse=True)
        del finished[beams:]
        if last or not running or self._done(finished, running[0][2], generated, budget):
            return []
        return running

    def _done(
        self, finished: list[Hypothesis], best_running: float, length: int, budget: int | None
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
        return not bool(best > finished[-1].score)

    # ------------------------------------------------------------------ results
    def finalize(self, rows: list[RowResult]) -> list[RowResult]:
        """The best ``num_return_sequences`` hypotheses per prompt, best first.

        Rows the loop ended itself (a stop string, a completed constraint) are
        hypotheses too, scored like finished beams.
        """
        extra: dict[int, list[Hypothesis]] = {}
        passes: dict[int, int] = {}
        for row in rows:
            passes[row.prompt_index] = max(passes.get(row.prompt_index, 0), row.forward_passes)
            self.prompt_ids.setdefault(row.prompt_index, list(row.prompt_ids))
            if row.score is None:
                continue
            length = max(len(row.token_ids), 1)
            extra.setdefault(row.prompt_index, []).append(
                Hypothesis(
                    score=row.score / length**self.length_penalty,
                    token_ids=list(row.token_ids),
                    log_prob=row.score,
                    finish_reason=row.finish_reason or "stop",
                )
            )
        ranked = {
            prompt: [h for (p, _), hs in self.hypotheses.items() if p == prompt for h in hs]
            + extra.get(prompt, [])
            for prompt in self.prompt_ids
        }
        return best_rows(
            self.prompt_ids, ranked, self.num_return_sequences, passes,
            score=lambda h: h.score,
        )
