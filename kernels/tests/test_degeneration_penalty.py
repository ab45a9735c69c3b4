"""``degeneration_penalty``: reference, vectorized torch and Triton (interpreted) agree."""

from __future__ import annotations

import decodekit_kernels as kernels
import pytest
import torch
from decodekit_kernels.degeneration_penalty import reference

BACKENDS = ["torch", "triton"]


def _inputs(rows: int, k: int, width: int, hidden: int, dtype: torch.dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(torch.randn(rows, k, generator=g), -1)
    cand = torch.randn(rows, k, hidden, generator=g).to(dtype)
    context = torch.randn(rows, width, hidden, generator=g).to(dtype)
    mask = torch.rand(rows, width, generator=g) > 0.3
    alpha = torch.rand(rows, generator=g)
    return probs, cand, context, mask, alpha


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize(("rows", "k", "width", "hidden"), [(1, 3, 7, 33), (33, 4, 19, 130)])
def test_matches_reference(backend, dtype, rows, k, width, hidden):
    probs, cand, context, mask, alpha = _inputs(rows, k, width, hidden, dtype)
    want = reference.degeneration_penalty(probs, cand, context, mask, alpha)
    got = kernels.degeneration_penalty(probs, cand, context, mask, alpha=alpha, backend=backend)
    assert got.dtype == torch.float32 and got.shape == (rows, k)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_contiguous_inputs(backend):
    """Transposed / strided views give the same scores as their contiguous copies."""
    g = torch.Generator().manual_seed(1)
    rows, k, width, hidden = 5, 3, 11, 37
    probs = torch.rand(k, rows, generator=g).t()  # [rows, k], column-major
    cand = torch.randn(rows, hidden, k, generator=g).transpose(1, 2)  # [rows, k, H]
    context = torch.randn(rows, 2 * width, hidden + 3, generator=g)[:, ::2, :hidden]
    mask = (torch.rand(width, rows, generator=g) > 0.2).t()
    assert not (probs.is_contiguous() or cand.is_contiguous() or context.is_contiguous())
    want = reference.degeneration_penalty(
        probs.contiguous(), cand.contiguous(), context.contiguous(), mask.contiguous(),
        torch.full((rows,), 0.4),
    )
    got = kernels.degeneration_penalty(probs, cand, context, mask, alpha=0.4, backend=backend)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", ["reference", *BACKENDS])
def test_known_values_and_edge_cases(backend):
    """Hand-computed scores; alpha=0 returns probs; a row without context has max_sim 0."""
    probs = torch.tensor([[0.7, 0.3], [0.5, 0.5]])
    cand = torch.tensor([[[1.0, 0.0], [1.0, 1.0]], [[0.0, 0.0], [3.0, 4.0]]])
    context = torch.tensor([[[2.0, 0.0], [0.0, -1.0]], [[1.0, 0.0], [0.0, 1.0]]])
    mask = torch.tensor([[True, True], [False, False]])
    got = kernels.degeneration_penalty(probs, cand, context, mask, alpha=torch.tensor([0.5, 0.2]),
                                       backend=backend)
    cos = 2 ** -0.5
    want = torch.tensor([[0.5 * 0.7 - 0.5 * 1.0, 0.5 * 0.3 - 0.5 * cos], [0.8 * 0.5, 0.8 * 0.5]])
    torch.testing.assert_close(got, want)
    zero = kernels.degeneration_penalty(probs, cand, context, mask, alpha=0.0, backend=backend)
    assert torch.equal(zero, probs)


def test_alpha_one_prefers_least_similar_candidate():
    probs = torch.tensor([[0.9, 0.1]])
    context = torch.tensor([[[1.0, 0.0, 0.0]]])
    cand = torch.tensor([[[1.0, 0.1, 0.0], [0.0, 1.0, 0.0]]])
    scores = kernels.degeneration_penalty(probs, cand, context, alpha=1.0)
    assert scores.argmax(-1).item() == 1


def test_bad_input_names_the_argument():
    probs, cand, context, mask, _ = _inputs(2, 3, 5, 8, torch.float32)
    op = kernels.degeneration_penalty
    with pytest.raises(ValueError, match="alpha must be in"):
        op(probs, cand, context, mask, alpha=1.5)
    with pytest.raises(ValueError, match="alpha must be in"):
        op(probs, cand, context, mask, alpha=torch.tensor([0.5, -0.1]))
    with pytest.raises(ValueError, match="alpha must be a scalar or have shape"):
        op(probs, cand, context, mask, alpha=torch.tensor([0.5, 0.1, 0.2]))
    with pytest.raises(ValueError, match="candidate_hidden must have shape"):
        op(probs, cand[:, :2], context, mask)
    with pytest.raises(ValueError, match="context_hidden must have shape"):
        op(probs, cand, context[..., :4], mask)
    with pytest.raises(ValueError, match="context_mask must have shape"):
        op(probs, cand, context, mask[:, :3])
    with pytest.raises(TypeError, match="context_mask must be one of bool"):
        op(probs, cand, context, mask.int())
    with pytest.raises(ValueError, match="probs must have 2 dimensions"):
        op(probs[0], cand, context, mask)
    with pytest.raises(ValueError, match="unknown backend"):
        op(probs, cand, context, mask, backend="cuda")
