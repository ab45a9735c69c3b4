"""Unit tests of the lookup drafters: n-gram index, adjacency table, tree template."""

from __future__ import annotations

import pytest
import torch
from decodekit_lookup import (
    AdjacencyTable,
    NgramIndex,
    PromptLookupDrafter,
    PromptLookupOptions,
    TokenRecyclingDrafter,
    TokenRecyclingOptions,
    static_tree,
)
from pydantic import ValidationError

import decodekit
from decodekit.contracts import DecodeView, DraftTree, Selection, StepOutput


def view_of(sequences: list[list[int]]) -> DecodeView:
    return DecodeView(
        sequences=sequences,
        prompt_lengths=[len(s) for s in sequences],
        generators=[torch.Generator() for _ in sequences],
        model=None,  # type: ignore[arg-type]  # the drafters never touch the model
        step=0,
        row_ids=list(range(len(sequences))),
    )


def test_registered_through_the_entry_point():
    registry = decodekit.get_registry()
    assert registry.get("drafters", "prompt_lookup") is PromptLookupDrafter
    assert registry.get("drafters", "token_recycling") is TokenRecyclingDrafter
    info = {p.name: p for p in decodekit.get_plugins()}["lookup"]
    assert info.version == "0.1.0"


# ------------------------------------------------------------------------ n-gram index


def test_longest_ngram_wins_over_a_more_recent_shorter_match():
    # suffix [7, 8, 9]: the 3-gram occurs at the start (continuation 1 2), the 1-gram
    # [9] more recently (continuation 5)
    seq = [7, 8, 9, 1, 2, 3, 9, 5, 4, 7, 8, 9]
    index = NgramIndex(1, 3)
    assert index.continuations(seq, 4) == [[1, 2, 3, 9]]
    index2 = NgramIndex(1, 2)  # only up to 2-grams: [8, 9] still points at the start
    assert index2.continuations(seq, 2) == [[1, 2]]


def test_most_recent_occurrence_of_the_same_ngram_wins():
    seq = [4, 5, 1, 4, 5, 2, 4, 5, 3, 0, 4, 5]
    assert NgramIndex(1, 3).continuations(seq, 3) == [[3, 0, 4]]
    # two candidates: the two most recent occurrences, most recent first
    assert NgramIndex(1, 3, keep=3).continuations(seq, 2, count=2) == [[3, 0], [2, 4]]


def test_falls_back_to_shorter_ngrams_and_reports_no_match():
    seq = [1, 2, 3, 4, 2]
    assert NgramIndex(1, 3).continuations(seq, 5) == [[3, 4, 2]]
    assert NgramIndex(2, 3).continuations(seq, 5) == []
    assert NgramIndex(1, 3).continuations([1, 2, 3], 5) == []


def test_index_is_incremental_and_matches_a_fresh_scan():
    gen = torch.Generator().manual_seed(0)
    seq = torch.randint(0, 6, (200,), generator=gen).tolist()
    incremental = NgramIndex(1, 3)
    for end in range(1, len(seq) + 1):
        got = incremental.continuations(seq[:end], 4)
        expected = NgramIndex(1, 3).continuations(seq[:end], 4)
        assert got == expected
        assert got == brute_force(seq[:end], 1, 3, 4)


def brute_force(seq: list[int], lo: int, hi: int, length: int) -> list[list[int]]:
    for n in range(min(hi, len(seq)), lo - 1, -1):
        suffix = seq[len(seq) - n :]
        for start in range(len(seq) - n - 1, -1, -1):
            if seq[start : start + n] == suffix:
                return [seq[start + n : start + n + length]]
    return []


def test_shrinking_sequence_is_an_error():
    index = NgramIndex(1, 2)
    index.continuations([1, 2, 1, 2], 2)
    with pytest.raises(ValueError, match="select_rows"):
        index.continuations([1, 2], 2)


# ---------------------------------------------------------------- prompt lookup drafter


def test_prompt_lookup_drafts_padded_chains_and_none_without_matches():
    drafter = PromptLookupDrafter(PromptLookupOptions(max_ngram=2), draft_length=3)
    draft = drafter.draft(view_of([[1, 2, 3, 4, 5, 1, 2], [9, 8, 7]]))
    assert draft is not None and draft.deterministic
    assert draft.tokens.tolist() == [[3, 4, 5], [-1, -1, -1]]
    assert draft.parents.tolist() == [[-1, 0, 1], [-1, -1, -1]]
    assert draft.is_chain()
    fresh = PromptLookupDrafter(draft_length=3)
    assert fresh.draft(view_of([[1, 2, 3], [4, 5, 6]])) is None


def test_prompt_lookup_select_rows_keeps_each_rows_index():
    drafter = PromptLookupDrafter(draft_length=2)
    rows = [[1, 2, 3, 1], [5, 6, 7, 5], [8, 9, 8]]
    drafter.draft(view_of(rows))
    drafter.select_rows(torch.tensor([2, 0, 0]))  # drop row 1, fork row 0
    kept = [rows[2] + [9], rows[0] + [2], rows[0] + [2]]
    draft = drafter.draft(view_of(kept))
    assert draft is not None
    assert draft.tokens.tolist() == [[8, 9], [3, 1], [3, 1]]
    assert drafter._rows[1] is not drafter._rows[2]  # forked rows do not share state


def test_prompt_lookup_candidates_form_a_prefix_tree():
    options = PromptLookupOptions(max_ngram=1, num_candidates=3)
    drafter = PromptLookupDrafter(options, draft_length=3, max_nodes=5)
    # after token 1: [2, 3, 4] (oldest), [2, 5, 6], [7, 8, 1] (most recent)
    seq = [1, 2, 3, 4, 1, 2, 5, 6, 1, 7, 8, 1]
    draft = drafter.draft(view_of([seq]))
    assert draft is not None
    # most recent first: 7 8 1, then 2 5 6, then 2 3 (budget of 5 nodes hit)
    assert draft.tokens.tolist() == [[7, 8, 1, 2, 5]]
    assert draft.parents.tolist() == [[-1, 0, 1, -1, 3]]


def test_options_validation_names_the_field():
    with pytest.raises(ValidationError, match="min_ngram"):
        PromptLookupOptions(min_ngram=4, max_ngram=2)
    with pytest.raises(ValidationError, match="max_ngram"):
        PromptLookupOptions(max_ngram=0)
    with pytest.raises(ValidationError, match="extra"):
        PromptLookupOptions(ngram=3)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="rank_weights"):
        TokenRecyclingOptions(rank_weights=(0.5, 0.0))
    with pytest.raises(ValueError, match="rank_weights has 2 entries"):
        TokenRecyclingDrafter(TokenRecyclingOptions(top_k=3, rank_weights=(0.5, 0.2)))
    with pytest.raises(ValueError, match="draft_length"):
        PromptLookupDrafter(draft_length=0)


# --------------------------------------------------------------------- tree template


@pytest.mark.parametrize(("nodes", "depth"), [(1, 1), (10, 3), (40, 6), (64, 6), (80, 4)])
def test_static_tree_shape(nodes: int, depth: int):
    weights = (0.45, 0.16, 0.08, 0.05, 0.035, 0.025, 0.02, 0.015)
    tree = static_tree(nodes, depth, weights)
    assert len(tree) == nodes
    assert max(tree.depths) <= depth
    assert tree.depths == sorted(tree.depths)  # breadth-first
    children: dict[int, list[int]] = {}
    for i, (parent, rank) in enumerate(zip(tree.parents, tree.ranks, strict=True)):
        assert parent < i
        children.setdefault(parent, []).append(rank)
    for ranks in children.values():  # siblings take ranks 0, 1, 2, ... in order
        assert ranks == list(range(len(ranks)))
    # every kept node outweighs every node left out (largest path products)
    def weight(i: int) -> float:
        w = 1.0
        while i >= 0:
            w *= weights[tree.ranks[i]]
            i = tree.parents[i]
        return w
    kept = min(weight(i) for i in range(nodes))
    counts = tree.children_counts()
    for i in range(-1, nodes):  # the heaviest missing child of any node
        parent_weight = 1.0 if i < 0 else weight(i)
        next_rank = counts[i + 1]
        depth_i = 0 if i < 0 else tree.depths[i]
        if next_rank < len(weights) and depth_i < depth:
            assert parent_weight * weights[next_rank] <= kept + 1e-12


def test_static_tree_known_small_case():
    tree = static_tree(5, 3, (0.5, 0.3))
    # weights: (0)=.5 (1)=.3 (0,0)=.25 (0,1)=.15 (1,0)=.15 beat (0,0,0)=.125
    assert tree.parents == [-1, -1, 0, 0, 1]
    assert tree.ranks == [0, 1, 0, 1, 0]
    assert tree.depths == [1, 1, 2, 2, 2]


# ----------------------------------------------------------------- adjacency table


def test_adjacency_update_keeps_topk_in_order_and_later_positions_win():
    table = AdjacencyTable(top_k=3)
    logits = torch.tensor([[0.0, 5.0, 1.0, 3.0, 2.0], [9.0, 0.0, 8.0, 7.0, 1.0],
                           [0.0, 1.0, 2.0, 3.0, 4.0]])
    table.update([2, 4, 2], logits)
    assert table.rows == {2: [4, 3, 2], 4: [0, 2, 3]}
    dense = table.as_tensor(5)
    assert dense.shape == (5, 3)
    assert dense[4].tolist() == [0, 2, 3] and dense[0].tolist() == [-1, -1, -1]


def test_token_recycling_fills_the_template_breadth_first():
    options = TokenRecyclingOptions(top_k=2, max_depth=2, rank_weights=(0.5, 0.4))
    drafter = TokenRecyclingDrafter(options, max_nodes=5)
    # weights: (0)=.5 (1)=.4 (0,0)=.25 (0,1)=.2 (1,0)=.2 -> BFS: r0 r1 | c(0,0) c(0,1) c(1,0)
    assert drafter.template.parents == [-1, -1, 0, 0, 1]
    assert drafter.template.ranks == [0, 1, 0, 1, 0]
    assert drafter.draft(view_of([[3]])) is None  # empty table: no draft
    drafter.table.rows = {3: [10, 11], 10: [12, 13]}  # 11 has no candidates yet
    draft = drafter.draft(view_of([[0, 3], [10]]))
    assert draft is not None and draft.deterministic
    assert draft.tokens.tolist() == [[10, 11, 12, 13, -1], [12, 13, -1, -1, -1]]
    assert draft.parents.tolist() == [[-1, -1, 0, 0, -1], [-1, -1, -1, -1, -1]]


def test_token_recycling_observe_recycles_root_and_node_logits():
    vocab = 6
    drafter = TokenRecyclingDrafter(TokenRecyclingOptions(top_k=2, max_depth=1), max_nodes=2)
    drafter.table.rows = {5: [1, 2]}
    view = view_of([[0, 5], [4]])
    draft = drafter.draft(view)
    assert draft is not None
    assert draft.tokens.tolist() == [[1, 2], [-1, -1]]
    raw = torch.zeros(2, 3, vocab)
    raw[0, 0, [3, 4]] = torch.tensor([2.0, 1.0])  # after root 5: 3, 4
    raw[0, 1, [0, 2]] = torch.tensor([1.0, 2.0])  # after node 1: 2, 0
    raw[0, 2, [5, 1]] = torch.tensor([3.0, 1.0])  # after node 2: 5, 1
    raw[1, 0, [1, 3]] = torch.tensor([1.0, 4.0])  # after root 4: 3, 1
    raw[1, 1:] = 100.0  # padding nodes: must be ignored
    output = StepOutput(logits=raw, hidden_states=None, raw_logits=raw)
    selection = Selection(tokens=[[3], [3]], kept_nodes=[[], []], accepted_draft=[0, 0])
    view.sequences[0].append(3)
    view.sequences[1].append(3)
    drafter.observe(view, draft, output, selection)
    assert drafter.table.rows == {5: [3, 4], 1: [2, 0], 2: [5, 1], 4: [3, 1]}


def test_token_recycling_persistent_table_is_shared_per_model():
    class Model:  # any object that supports weak references stands in for the model
        pass

    class Context:
        model = Model()

    options = TokenRecyclingOptions(persistent=True)
    first = TokenRecyclingDrafter(options, context=Context())  # type: ignore[arg-type]
    second = TokenRecyclingDrafter(options, context=Context())  # type: ignore[arg-type]
    third = TokenRecyclingDrafter(TokenRecyclingOptions(), context=Context())  # type: ignore[arg-type]
    assert first.table is second.table
    assert third.table is not first.table


def test_draft_trees_are_valid_for_the_core():
    drafter = TokenRecyclingDrafter(max_nodes=40)
    gen = torch.Generator().manual_seed(1)
    drafter.table.update(list(range(50)), torch.randn(50, 50, generator=gen))
    draft = drafter.draft(view_of([[1], [2], [3]]))
    assert isinstance(draft, DraftTree) and draft.num_nodes == 40
    depths = draft.depths()
    assert int(depths.max()) <= 6
    assert not draft.is_chain()


def test_bad_drafter_options_name_the_field_through_speculative():
    if "speculative" not in decodekit.get_registry().strategies:
        pytest.skip("the speculative strategy (plugins/speculative) is not installed")
    from decodekit.errors import ConfigError
    from decodekit.testing import MarkovModel

    engine = decodekit.Engine(MarkovModel.random(4))
    with pytest.raises(ConfigError, match=r"drafter_options\.max_ngram"):
        engine.generate([[0]], strategy="speculative", drafter="prompt_lookup",
                        drafter_options={"max_ngram": 0})
    with pytest.raises(ConfigError, match=r"drafter_options\.top_k"):
        engine.generate([[0]], strategy="speculative", drafter="token_recycling",
                        drafter_options={"top_k": 0})


def test_prompt_lookup_shorter_draft_length_cuts_the_full_draft():
    """Adaptive mode shortens draft_length: the draft is the full one cut (prefix-consistent),
    never a tree whose node budget went elsewhere."""
    options = PromptLookupOptions(max_ngram=1, num_candidates=3)
    seq = [1, 2, 3, 4, 1, 2, 5, 6, 1, 7, 8, 1]
    full = PromptLookupDrafter(options, draft_length=3, max_nodes=5).draft(view_of([seq]))
    assert full is not None and full.tokens.tolist() == [[7, 8, 1, 2, 5]]
    drafter = PromptLookupDrafter(options, draft_length=3, max_nodes=5)
    drafter.draft_length = 2
    cut = drafter.draft(view_of([seq]))
    assert cut is not None
    assert cut.tokens.tolist() == [[7, 8, 2, 5]] and cut.parents.tolist() == [[-1, 0, -1, 2]]
    drafter.draft_length = 1
    cut = drafter.draft(view_of([seq]))
    assert cut is not None
    assert cut.tokens.tolist() == [[7, 2]] and cut.parents.tolist() == [[-1, -1]]
    chain = PromptLookupDrafter(PromptLookupOptions(max_ngram=2), draft_length=3)
    chain.draft_length = 2
    draft = chain.draft(view_of([[1, 2, 3, 4, 5, 1, 2]]))
    assert draft is not None and draft.tokens.tolist() == [[3, 4]]


def test_drafters_declare_whether_they_draft_trees():
    lookup = PromptLookupDrafter.drafts_trees
    assert not lookup(PromptLookupOptions(), draft_length=4, max_nodes=None)
    assert lookup(PromptLookupOptions(num_candidates=2), draft_length=4, max_nodes=None)
    assert not lookup(PromptLookupOptions(num_candidates=2), draft_length=4, max_nodes=1)
    recycling = TokenRecyclingDrafter.drafts_trees
    assert recycling(TokenRecyclingOptions(), draft_length=4, max_nodes=None)
    assert not recycling(TokenRecyclingOptions(top_k=1), draft_length=4, max_nodes=None)
    assert not recycling(TokenRecyclingOptions(), draft_length=4, max_nodes=1)
    drafter = TokenRecyclingDrafter(TokenRecyclingOptions(top_k=1), draft_length=4)
    assert drafter.template.parents == [-1, 0, 1, 2]  # what drafts_trees reasons about
