"""The verifiers' randomness is each row's own: seeds per generated token, node uniforms.

These are the unit-level reasons a speculative row gives the same tokens alone and in a
batch (the end-to-end check is tests/integration/test_row_independence.py).
"""

from __future__ import annotations

import decodekit_kernels as kernels
import pytest
import torch
from decodekit_speculative.verifiers import (
    RejectionTreeVerifier,
    TokenSeeds,
    derive_seeds,
    draw_node_uniforms,
)

from decodekit.contracts import DecodeView, DraftTree, StepOutput
from decodekit.sampling import Warper


def generators(*seeds: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


def test_node_uniforms_do_not_depend_on_the_padded_width():
    seeds = torch.tensor([3, 2**40 + 7])
    narrow, wide = draw_node_uniforms(seeds, 3), draw_node_uniforms(seeds, 9)
    assert torch.equal(narrow, wide[:, :3])
    assert torch.equal(draw_node_uniforms(seeds[1:], 9), wide[1:])  # nor on other rows
    assert not torch.equal(wide[0], wide[1])
    assert not torch.equal(derive_seeds(seeds, 1), seeds)


def test_token_seeds_give_the_kth_draw_to_the_kth_token_whatever_the_lookahead():
    stream = TokenSeeds()
    gens = generators(11, 12)
    stream.reset(2)
    first = stream.peek(gens, [3, 1])  # row 0 looks three tokens ahead, row 1 one
    stream.consume(gens, [2, 1])
    second = stream.peek(gens, [1, 2])
    reference = generators(11, 12)
    expected = [[int(kernels.seeds_from_generators([g])[0]) for _ in range(4)]
                for g in reference]
    assert first.tolist() == [expected[0][:3], [expected[1][0], 0, 0]]
    assert second.tolist() == [[expected[0][2], 0], expected[1][1:3]]
    stream.select_rows(torch.tensor([1]))
    assert stream.peek(gens[1:], [1]).tolist() == [[expected[1][1]]]
    with pytest.raises(RuntimeError, match="select_rows"):
        stream.peek(gens, [1, 1])


def _view(gens: list[torch.Generator], step: int = 0) -> DecodeView:
    rows = len(gens)
    return DecodeView(sequences=[[0]] * rows, prompt_lengths=[1] * rows, generators=gens,
                      model=None, step=step, row_ids=list(range(rows)))  # type: ignore[arg-type]


def test_a_row_without_nodes_commits_what_a_step_without_a_draft_would():
    vocab, nodes = 11, 3
    logits = torch.randn(2, 1 + nodes, vocab, generator=torch.Generator().manual_seed(0))
    proposals = torch.softmax(torch.randn(2, nodes, vocab), -1)
    draft = DraftTree.chain(torch.tensor([[4, 5, 6], [-1, -1, -1]]), proposals)
    warper = Warper(temperature=0.9)
    verifier = RejectionTreeVerifier(RejectionTreeVerifier.Options(backend="torch"), warper=warper)
    output = StepOutput(logits=logits, hidden_states=None, raw_logits=logits)
    batch = verifier.select(_view(generators(1, 2)), output, draft)
    alone = RejectionTreeVerifier(RejectionTreeVerifier.Options(backend="torch"), warper=warper)
    root = logits[1:, :1]
    plain = alone.select(_view(generators(2)),
                         StepOutput(logits=root, hidden_states=None, raw_logits=root), None)
    assert batch.tokens[1] == plain.tokens[0] and batch.kept_nodes[1] == []


def test_one_hot_drafts_commit_the_tokens_drawn_without_any_draft():
    vocab = 7
    logits = torch.randn(1, 4, vocab, generator=torch.Generator().manual_seed(5))
    warper = Warper(temperature=1.0)
    # three plain steps of a row...
    plain = RejectionTreeVerifier(warper=warper)
    gens = generators(9)
    tokens = []
    for step in range(3):
        root = logits[:, step : step + 1]
        out = StepOutput(logits=root, hidden_states=None, raw_logits=root)
        tokens += plain.select(_view(gens, step), out, None).tokens[0]
    # ...and one step whose chain holds the first two of those tokens (and the logits
    # after them): the same three tokens, two of them accepted from the draft
    verifier = RejectionTreeVerifier(warper=warper)
    draft = DraftTree.chain(torch.tensor([tokens[:2]]))
    out = StepOutput(logits=logits[:, :3], hidden_states=None, raw_logits=logits[:, :3])
    selection = verifier.select(_view(generators(9)), out, draft)
    assert selection.tokens[0] == tokens and selection.accepted_draft == [2]
