"""verify_chain and verify_tree: every backend against the torch reference, exactly.

The Triton kernels run on CPU under ``TRITON_INTERPRET=1`` (set by the root conftest).
Inputs: odd vocabularies (111, 32001), batch 1 and 33, float32, one-hot and sampled
proposals, greedy and sampling modes, padded drafts, and non-contiguous probabilities.
Drafts are built so that every branch of the ops happens: half the draft tokens are the
target's argmax (often accepted), the others random (often rejected).
"""

from __future__ import annotations

import decodekit_kernels as kernels
import pytest
import torch

BACKENDS = ("torch", "triton")
# (rows, vocab): the interpreter is slow at large vocabularies, so 32001 uses few rows
SHAPES = [(1, 111), (33, 111), (1, 32001), (3, 32001)]


def probs(rows: int, nodes: int, vocab: int, gen: torch.Generator, *, layout: str) -> torch.Tensor:
    logits = torch.randn(rows, nodes, vocab, generator=gen) * 3.0
    logits[:, :, 1::7] = float("-inf")  # some zero-probability tokens
    out = torch.softmax(logits, -1)
    if layout == "transposed":  # strides (.., 1, nodes * rows)-like: a permuted copy
        out = out.permute(2, 1, 0).contiguous().permute(2, 1, 0)
    return out


def chain_case(rows: int, vocab: int, k: int, seed: int, *, layout: str = "contiguous",
               sampled: bool = True):
    gen = torch.Generator().manual_seed(seed)
    p = probs(rows, k + 1, vocab, gen, layout=layout)
    q = probs(rows, k, vocab, gen, layout="contiguous") if sampled else None
    tokens = torch.randint(0, vocab, (rows, k), generator=gen)
    good = torch.rand(rows, k, generator=gen) < 0.6
    tokens = torch.where(good, p[:, :k].argmax(-1), tokens)
    if rows > 2:
        tokens[1, k // 2:] = -1  # a shorter draft
    uniforms = torch.rand(rows, k, generator=gen)
    seeds = torch.randint(0, 2**62, (rows,), generator=gen)
    return p, q, tokens, uniforms, seeds


TREE_PARENTS = [-1, 0, 1, -1, 3, 0, -1, 6]  # three root children, branching at node 0


def tree_case(rows: int, vocab: int, seed: int, *, layout: str = "contiguous",
              sampled: bool = True):
    gen = torch.Generator().manual_seed(seed)
    n = len(TREE_PARENTS)
    parents = torch.tensor(TREE_PARENTS).expand(rows, n).clone()
    p = probs(rows, n + 1, vocab, gen, layout=layout)
    q = probs(rows, n, vocab, gen, layout="contiguous") if sampled else None
    tokens = torch.randint(0, vocab, (rows, n), generator=gen)
    good = torch.rand(rows, n, generator=gen) < 0.6
    at_parent = p[torch.arange(rows).unsqueeze(1), parents + 1].argmax(-1)
    tokens = torch.where(good, at_parent, tokens)
    if rows > 2:
        tokens[2, 6:] = -1
        parents[2, 6:] = -1
    uniforms = torch.rand(rows, n, generator=gen)
    seeds = torch.randint(0, 2**62, (rows,), generator=gen)
    return p, q, tokens, parents, uniforms, seeds


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("rows", "vocab"), SHAPES)
@pytest.mark.parametrize("mode", ["sampled", "one-hot", "greedy"])
def test_verify_chain_backends_match_reference(backend, rows, vocab, mode):
    if backend == "triton":
        pytest.importorskip("triton")
    layout = "transposed" if rows == 33 else "contiguous"
    p, q, tokens, u, seeds = chain_case(rows, vocab, 4, seed=rows + vocab, layout=layout,
                                        sampled=mode == "sampled")
    greedy = mode == "greedy"
    want = kernels.verify_chain(p, q, tokens, u, seeds, greedy=greedy, backend="reference")
    got = kernels.verify_chain(p, q, tokens, u, seeds, greedy=greedy, backend=backend)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    # the case exercises acceptance and rejection
    if rows == 33:
        assert int((want[0] > 0).sum()) > 0 and int((want[0] < 4).sum()) > 0


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("rows", "vocab"), SHAPES)
@pytest.mark.parametrize("mode", ["sampled", "one-hot", "greedy"])
def test_verify_tree_backends_match_reference(backend, rows, vocab, mode):
    if backend == "triton":
        pytest.importorskip("triton")
    layout = "transposed" if rows == 33 else "contiguous"
    p, q, tokens, parents, u, seeds = tree_case(rows, vocab, seed=rows * vocab, layout=layout,
                                                sampled=mode == "sampled")
    greedy = mode == "greedy"
    want = kernels.verify_tree(p, q, tokens, parents, u, seeds, greedy=greedy,
                               backend="reference")
    got = kernels.verify_tree(p, q, tokens, parents, u, seeds, greedy=greedy, backend=backend)
    for a, b in zip(got, want, strict=True):
        assert torch.equal(a, b)
    if rows == 33:
        assert int((want[1] > 0).sum()) > 0 and int((want[1] > 1).sum()) < rows


def test_tree_on_a_chain_equals_verify_chain():
    p, q, tokens, u, seeds = chain_case(33, 111, 4, seed=5)
    parents = torch.arange(-1, 3).expand(33, 4).clone()
    parents = torch.where(tokens >= 0, parents, -1)
    accepted, nxt = kernels.verify_chain(p, q, tokens, u, seeds)
    path, tree_accepted, tree_next = kernels.verify_tree(p, q, tokens, parents, u, seeds)
    assert torch.equal(accepted, tree_accepted) and torch.equal(nxt, tree_next)
    for r in range(33):
        assert path[r, : int(accepted[r])].tolist() == list(range(int(accepted[r])))


def test_greedy_chain_is_exact_match():
    p = torch.softmax(torch.randn(4, 4, 50, generator=torch.Generator().manual_seed(0)), -1)
    best = p.argmax(-1)
    tokens = best[:, :3].clone()
    tokens[1, 1] = (tokens[1, 1] + 1) % 50  # mismatch at position 1
    tokens[2, 0] = (tokens[2, 0] + 1) % 50
    u = torch.zeros(4, 3)
    accepted, nxt = kernels.verify_chain(p, None, tokens, u, torch.zeros(4, dtype=torch.long),
                                         greedy=True)
    assert accepted.tolist() == [3, 1, 0, 3]
    assert nxt.tolist() == [int(best[0, 3]), int(best[1, 1]), int(best[2, 0]), int(best[3, 3])]


def test_residual_falls_back_to_target_when_rounding_leaves_no_mass():
    # p == q and the uniform forces a rejection: max(0, p - q) is all zero
    p = torch.tensor([[[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]]])
    q = torch.tensor([[[0.5, 0.5, 0.0]]])
    for backend in ("reference", "torch", "triton"):
        accepted, nxt = kernels.verify_chain(p, q, torch.tensor([[0]]), torch.tensor([[1.0]]),
                                             torch.tensor([3]), backend=backend)
        assert accepted.tolist() == [0] and nxt.item() in (0, 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"draft_tokens": torch.tensor([[0, 5]])}, "draft_tokens holds 5"),
        ({"draft_tokens": torch.tensor([0, 1])}, "draft_tokens must have 2 dimensions"),
        ({"uniforms": torch.zeros(1, 3)}, "uniforms must have shape (1, 2)"),
        ({"seeds": torch.zeros(2, dtype=torch.long)}, "seeds must have shape (1,)"),
        ({"draft_probs": torch.zeros(1, 2, 4)}, "draft_probs must have shape (1, 2, 3)"),
        ({"backend": "cuda"}, "unknown backend"),
    ],
)
def test_verify_chain_bad_input_names_the_argument(kwargs, message):
    args = {
        "target_probs": torch.full((1, 3, 3), 1 / 3),
        "draft_probs": None,
        "draft_tokens": torch.tensor([[0, 1]]),
        "uniforms": torch.zeros(1, 2),
        "seeds": torch.zeros(1, dtype=torch.long),
    }
    backend = kwargs.pop("backend", "auto")
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=message.replace("(", r"\(").replace(")", r"\)")):
        kernels.verify_chain(args["target_probs"], args["draft_probs"], args["draft_tokens"],
                             args["uniforms"], args["seeds"], backend=backend)


def test_verify_tree_rejects_non_topological_parents():
    p = torch.full((1, 3, 3), 1 / 3)
    with pytest.raises(ValueError, match="topological"):
        kernels.verify_tree(p, None, torch.tensor([[0, 1]]), torch.tensor([[1, -1]]),
                            torch.zeros(1, 2), torch.zeros(1, dtype=torch.long))
