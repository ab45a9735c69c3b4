"""Tie rules of top-p and typical-p, against plain references and transformers' warpers.

decodekit's cuts keep ties: top-p keeps every token tied with the last one needed to
reach the mass, typical-p every token as close to the entropy as the last one kept. So
the kept set depends on the distribution only, never on token order. transformers'
``TypicalLogitsWarper`` follows the same rule; its ``TopPLogitsWarper`` breaks ties by
its sort order, keeping a subset of the tied tokens.
"""

import pytest
import torch
from transformers import TopPLogitsWarper, TypicalLogitsWarper

from decodekit.sampling import Warper
from decodekit.testing import reference_warp

# token 0 has mass 0.4, tokens 1, 2, 3 are tied at 0.2 each
TIED = torch.log(torch.tensor([[0.4, 0.2, 0.2, 0.2]]))
# no ties
DISTINCT = torch.log(torch.tensor([[0.05, 0.5, 0.15, 0.3]]))


def kept(probs: torch.Tensor) -> set[int]:
    return set(torch.nonzero(probs[0] > 0).flatten().tolist())


def transformers_kept(warper, logits: torch.Tensor) -> set[int]:
    out = warper(torch.zeros(1, 1, dtype=torch.long), logits.clone())
    return set(torch.nonzero(out[0] > float("-inf")).flatten().tolist())


@pytest.mark.parametrize("top_p", [0.5, 0.55, 0.7])
def test_top_p_keeps_every_tied_token(top_p):
    ours = kept(Warper(top_p=top_p).probs(TIED))
    # 0.4 alone is below each top_p, so one token of the tie is needed: all three stay
    assert ours == {0, 1, 2, 3}
    assert ours == kept(torch.tensor([reference_warp(TIED[0].tolist(), top_p=top_p)]))
    theirs = transformers_kept(TopPLogitsWarper(top_p), TIED)
    assert 0 in theirs and theirs < ours  # transformers keeps only part of the tie


@pytest.mark.parametrize("top_p", [0.5, 0.7, 0.9])
def test_top_p_equals_transformers_without_ties(top_p):
    ours = kept(Warper(top_p=top_p).probs(DISTINCT))
    assert ours == transformers_kept(TopPLogitsWarper(top_p), DISTINCT)
    assert ours == kept(torch.tensor([reference_warp(DISTINCT[0].tolist(), top_p=top_p)]))


@pytest.mark.parametrize("logits", [TIED, DISTINCT], ids=["tied", "distinct"])
@pytest.mark.parametrize("mass", [0.2, 0.5, 0.8, 0.95])
def test_typical_p_equals_transformers_ties_included(logits, mass):
    ours = kept(Warper(typical_p=mass).probs(logits))
    assert ours == transformers_kept(TypicalLogitsWarper(mass), logits)
    assert ours == kept(torch.tensor([reference_warp(logits[0].tolist(), typical_p=mass)]))


def test_typical_p_keeps_the_whole_tie_whatever_the_token_order():
    # the three tied tokens are the closest to the entropy; 0.2 of mass already needs one
    for perm in ([0, 1, 2, 3], [3, 1, 0, 2], [1, 2, 3, 0]):
        logits = TIED[:, perm]
        probs = Warper(typical_p=0.2).probs(logits)[0]
        tied = [i for i, p in enumerate(perm) if p != 0]
        assert kept(probs.unsqueeze(0)) == set(tied)
        torch.testing.assert_close(probs[tied], torch.full((3,), 1 / 3))
