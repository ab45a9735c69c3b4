"""verify_chain and verify_tree produce exactly the target distribution, for arbitrary (p, q).

- Chain, exact: for a target and a draft given as conditional tables over a vocabulary of
  3 and drafts of 2 tokens, every draft is enumerated with its probability, and the
  acceptance uniforms are integrated exactly: the op's test at position ``i`` depends on
  ``u_i`` only through ``u_i < p_i(x_i) / q_i(x_i) = t_i``, so evaluating the op at one
  uniform inside ``[0, t_i)`` and one inside ``[t_i, 1)`` with weights ``min(1, t_i)`` and
  ``1 - min(1, t_i)`` is the exact integral. The op reports how many tokens it accepted;
  the next token's distribution at a rejection is the residual ``norm(max(0, p - q))`` and
  after full acceptance ``p_K``. The resulting distribution over the first three tokens
  (extended with the target where fewer were committed) must equal the target's to 1e-9.
- The residual and bonus draws themselves (Gumbel-max with seeds) are checked by
  chi-square: 20 000 rows with distinct seeds at significance alpha = 1e-3.
- Tree, statistical: 20 000 rows, each drafting a tree of two root children (i.i.d. or
  without replacement) with one grandchild each from the draft tables, random uniforms
  and seeds; the first two committed tokens must follow the target (chi-square, alpha =
  1e-3) and no zero-probability sequence may appear.

Hypothesis (profile "ci", derandomized) draws the tables, with zeros in both p and q.
"""

from __future__ import annotations

import itertools

import decodekit_kernels as kernels
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from decodekit.testing import assert_matches_distribution

V = 3


@st.composite
def tables(draw, vocab: int = V):
    """Conditional distribution tables over the prefixes of length 0, 1 and 2: p0 [V], p1 [V, V], p2 [V, V, V]."""
    seed = draw(st.integers(0, 2**31 - 1))
    zero_frac = draw(st.sampled_from([0.0, 0.3]))
    gen = torch.Generator().manual_seed(seed)

    def table(*shape):
        logits = torch.randn(*shape, vocab, generator=gen, dtype=torch.float64) * 1.5
        drop = torch.rand(*shape, vocab, generator=gen) < zero_frac
        drop[..., 0] &= ~drop[..., 1:].all(-1)  # keep at least one token
        return torch.softmax(logits.masked_fill(drop, float("-inf")), -1)

    return table(), table(vocab), table(vocab, vocab)


def target_prob(p, seq):
    p0, p1, p2 = p
    out = p0[seq[0]]
    if len(seq) > 1:
        out = out * p1[seq[0], seq[1]]
    if len(seq) > 2:
        out = out * p2[seq[0], seq[1], seq[2]]
    return float(out)


def dist_at(p, prefix):
    p0, p1, p2 = p
    return [p0, p1[prefix[0]] if prefix else None, p2[tuple(prefix)] if len(prefix) == 2 else None][len(prefix)]


@settings(max_examples=12)
@given(p=tables(), q=tables(), deterministic=st.booleans())
def test_verify_chain_integrates_to_the_target_exactly(p, q, deterministic):
    k = 2
    result = {seq: 0.0 for seq in itertools.product(range(V), repeat=3)}
    for draft in itertools.product(range(V), repeat=k):
        if deterministic:  # a deterministic drafter: its argmax chain, one-hot proposals
            argmax_draft = (int(q[0].argmax()), int(q[1][int(q[0].argmax())].argmax()))
            if draft != argmax_draft:
                continue
            draft_prob = 1.0
        else:
            draft_prob = float(q[0][draft[0]] * q[1][draft[0], draft[1]])
        if draft_prob == 0.0:
            continue
        target = torch.stack([dist_at(p, draft[:i]) for i in range(k + 1)]).float().unsqueeze(0)
        proposals = None if deterministic else torch.stack(
            [dist_at(q, draft[:i]) for i in range(k)]).float().unsqueeze(0)
        tokens = torch.tensor([draft])
        ratios = []
        for i in range(k):
            qx = 1.0 if deterministic else float(proposals[0, i, draft[i]])
            ratios.append(min(1.0, float(target[0, i, draft[i]]) / qx))
        # integrate over (u_0, u_1): each below or above its threshold
        for pattern in itertools.product([True, False], repeat=k):
            weight = 1.0
            u = []
            for i, below in enumerate(pattern):
                t = ratios[i]
                weight *= t if below else 1.0 - t
                u.append(t / 2 if below else (1.0 + t) / 2)
            if weight <= 0.0:
                continue
            accepted, _ = kernels.verify_chain(target, proposals, tokens,
                                               torch.tensor([u], dtype=torch.float32),
                                               torch.tensor([0]))
            n = int(accepted)
            p_n = target[0, n].double()
            if n < k:
                q_n = proposals[0, n].double() if proposals is not None else \
                    torch.nn.functional.one_hot(torch.tensor(draft[n]), V).double()
                res = torch.clamp(p_n - q_n, min=0.0)
                nxt = res / res.sum() if float(res.sum()) > 0 else p_n
            else:
                nxt = p_n
            for token in range(V):
                committed = (*draft[:n], token)
                mass = draft_prob * weight * float(nxt[token])
                if mass == 0.0:
                    continue
                for rest in itertools.product(range(V), repeat=3 - len(committed)):
                    seq = committed + rest
                    result[seq] += mass * target_prob(p, seq) / target_prob(p, committed)
    for seq, prob in result.items():
        assert abs(prob - target_prob(p, seq)) < 1e-6, (seq, prob, target_prob(p, seq))


@settings(max_examples=6)
@given(p=tables(vocab=7), q=tables(vocab=7), bonus=st.booleans())
def test_residual_and_bonus_draws_follow_their_distributions(p, q, bonus):
    rows = 20_000
    vocab = 7
    target = torch.stack([p[0], p[1][0]]).float().expand(rows, 2, vocab).contiguous()
    proposals = q[0].float().view(1, 1, vocab).expand(rows, 1, vocab).contiguous()
    tokens = torch.zeros((rows, 1), dtype=torch.long)
    if bonus:  # uniform 0 accepts whenever p(x) > 0
        tokens.fill_(int(p[0].argmax()))
        uniforms = torch.zeros(rows, 1)
        expected = p[1][0]
    else:  # a token with p(x) < q(x) and u -> 1 always rejects
        ratio = p[0] / q[0].clamp_min(1e-30)
        x = int(ratio.argmin())
        if float(ratio[x]) >= 1.0:
            return
        tokens.fill_(x)
        uniforms = torch.full((rows, 1), 0.999999)
        res = torch.clamp(p[0] - q[0], min=0.0)
        expected = res / res.sum()
    seeds = torch.arange(rows, dtype=torch.long) * 7919 + 3
    accepted, nxt = kernels.verify_chain(target, proposals, tokens, uniforms, seeds)
    assert bool((accepted == (1 if bonus else 0)).all())
    counts = torch.bincount(nxt, minlength=vocab).tolist()
    observed = {t: c for t, c in enumerate(counts) if c}
    assert_matches_distribution(observed, {t: float(v) for t, v in enumerate(expected)},
                                alpha=1e-3)


@settings(max_examples=8)
@given(p=tables(), q=tables(), replacement=st.booleans(), deterministic=st.booleans())
def test_verify_tree_follows_the_target(p, q, replacement, deterministic):
    rows = 20_000
    gen = torch.Generator().manual_seed(0)
    q0, q1 = q[0].float(), q[1].float()
    p0, p1, p2 = (t.float() for t in p)
    parents = torch.tensor([-1, 0, -1, 2]).expand(rows, 4).contiguous()
    if deterministic:  # the two most likely first tokens, each with its argmax
        order = q0.argsort(descending=True)
        a = torch.full((rows,), int(order[0]))
        b = torch.full((rows,), int(order[1]))
    else:
        a = torch.multinomial(q0, rows, replacement=True, generator=gen)
        if replacement:
            qb = q0.expand(rows, V)
        else:
            qb = q0.expand(rows, V).scatter(1, a.unsqueeze(1), 0.0)
            qb = qb / qb.sum(-1, keepdim=True).clamp_min(1e-30)
        b = torch.multinomial(qb.clamp_min(0) + 1e-30 * (qb.sum(-1, keepdim=True) == 0), 1,
                              generator=gen).squeeze(1)
        if not replacement:  # no mass left (q0 one-hot): drop the second child
            b = torch.where(qb.sum(-1) > 0.5, b, -1)
    if deterministic:
        a1 = q1[a].argmax(-1)
        b1 = q1[b].argmax(-1)
    else:
        a1 = torch.multinomial(q1[a], 1, generator=gen).squeeze(1)
        b1 = torch.multinomial(q1[b.clamp(min=0)], 1, generator=gen).squeeze(1)
        b1 = torch.where(b >= 0, b1, -1)
    tokens = torch.stack([a, a1, b, b1], 1)
    target = torch.stack([p0.expand(rows, V), p1[a], p1[b.clamp(min=0)],
                          p2[a, a1], p2[b.clamp(min=0), b1.clamp(min=0)]], 1)
    target = target[:, [0, 1, 3, 2, 4]]  # index i + 1 is after node i: nodes a, a1, b, b1
    if deterministic:
        props = None
    else:
        first_b = qb if not replacement else q0.expand(rows, V)
        props = torch.stack([q0.expand(rows, V), q1[a], first_b, q1[b.clamp(min=0)]], 1)
    uniforms = torch.rand(rows, 4, generator=gen)
    seeds = torch.randint(0, 2**62, (rows,), generator=gen)
    path, accepted, nxt = kernels.verify_tree(target.contiguous(), props, tokens, parents,
                                              uniforms, seeds)
    # first two committed tokens; a row that committed one token takes its second from p1
    first = torch.where(accepted >= 1, tokens.gather(1, path[:, :1].clamp(min=0)).squeeze(1), nxt)
    second_draft = tokens.gather(1, path[:, 1:2].clamp(min=0)).squeeze(1)
    second = torch.where(accepted >= 2, second_draft, nxt)
    extra = torch.multinomial(p1[first], 1, generator=gen).squeeze(1)
    second = torch.where(accepted == 0, extra, second)
    counts = torch.bincount(first * V + second, minlength=V * V).tolist()
    observed = {(i // V, i % V): c for i, c in enumerate(counts) if c}
    expected = {(f, s): float(p0[f] * p1[f, s]) for f in range(V) for s in range(V)}
    assert_matches_distribution(observed, expected, alpha=1e-3)
