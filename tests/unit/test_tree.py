import pytest
import torch

from decodekit.contracts import DraftTree
from decodekit.tree import build_step, step_attention_mask


def test_chain_helper_and_depths():
    draft = DraftTree.chain(torch.tensor([[5, 6, 7], [8, 9, -1]]))
    assert draft.parents.tolist() == [[-1, 0, 1], [-1, 0, -1]]
    assert draft.depths().tolist()[0] == [1, 2, 3]
    assert draft.is_chain()
    assert draft.deterministic


def test_tree_must_be_topological():
    with pytest.raises(ValueError, match="topological"):
        DraftTree(tokens=torch.tensor([[1, 2]]), parents=torch.tensor([[1, -1]]))


def test_tree_shapes_are_checked():
    with pytest.raises(ValueError, match=r"\[rows, N\]"):
        DraftTree(tokens=torch.tensor([[1, 2]]), parents=torch.tensor([[-1]]))
    with pytest.raises(ValueError, match="proposals"):
        DraftTree(
            tokens=torch.tensor([[1]]), parents=torch.tensor([[-1]]), proposals=torch.ones(1, 2)
        )


def test_step_positions_and_mask_for_a_tree():
    # root token 4 at position 10; nodes: a(-1) b(-1) c(a) d(c)
    draft = DraftTree(tokens=torch.tensor([[11, 12, 13, 14]]), parents=torch.tensor([[-1, -1, 0, 2]]))
    step = build_step([[4]], [10], draft)
    assert step.tokens.tolist() == [[4, 11, 12, 13, 14]]
    assert step.positions.tolist() == [[10, 11, 11, 12, 13]]
    mask = step_attention_mask(torch.ones(1, 3, dtype=torch.bool), step)[0, 0]
    assert mask.shape == (5, 8)
    assert mask[:, :3].all()  # everyone sees the cache
    expected = [
        [1, 0, 0, 0, 0],  # root
        [1, 1, 0, 0, 0],  # a
        [1, 0, 1, 0, 0],  # b: not a
        [1, 1, 0, 1, 0],  # c: root, a, c
        [1, 1, 0, 1, 1],  # d: root, a, c, d
    ]
    assert mask[:, 3:].int().tolist() == expected


def test_padding_slots_attend_to_themselves_only():
    step = build_step([[1, 2, 3], [7]], [0, 0], None)
    assert step.slot_valid.tolist() == [[True, True, True], [False, False, True]]
    assert step.positions.tolist() == [[0, 1, 2], [0, 0, 0]]
    mask = step_attention_mask(torch.zeros(2, 0, dtype=torch.bool), step)[:, 0]
    assert mask[1].int().tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    assert mask[0].int().tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    # holes in the cache are never attended to
    cache_valid = torch.tensor([[True, False], [True, True]])
    mask = step_attention_mask(cache_valid, step)[:, 0]
    assert not mask[0, :, 1].any()
