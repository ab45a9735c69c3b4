"""AttentionModel: its cached, tree-shaped forwards equal a from-scratch recomputation.

The lossless and greedy-equivalence checks trust :meth:`AttentionModel.exact_logits` as
the ground truth and the decode loop drives :meth:`AttentionModel.forward`; these tests
pin that the two agree on every case the loop produces (left padding, draft trees,
holes from rejected nodes, rollback, forked and dropped rows, compaction), and that the
logits really depend on what a bug would change (positions, attended tokens).
"""

import itertools
import random

import pytest
import torch

from decodekit.contracts import DraftTree
from decodekit.testing import AttentionModel, MarkovModel, next_token_logits
from decodekit.tree import build_step

TOL = 1e-6  # float32 logits of float64 computations


def tree(rows_tokens, rows_parents):
    return DraftTree(tokens=torch.tensor(rows_tokens), parents=torch.tensor(rows_parents))


def exact(model, sequence):
    return torch.tensor(model.exact_logits(sequence), dtype=torch.float64)


class Driver:
    """Drives a model like the decode loop: pending tokens, drafts, commits."""

    def __init__(self, model, prompts):
        self.model = model
        self.cache = model.new_cache(len(prompts))
        self.sequences = [list(p) for p in prompts]
        self.pending = [list(p) for p in prompts]

    def step(self, draft=None):
        positions = self.cache.next_positions.tolist()
        step = build_step(self.pending, positions, draft)
        result = self.model.forward(step, self.cache)
        return step, result.logits

    def commit(self, step, kept, new_tokens, draft=None):
        """Keep the pending slots and the ``kept`` nodes of each row; then one new token."""
        keep = step.slot_valid.clone()
        keep[:, step.num_pending:] = False
        for r, nodes in enumerate(kept):
            for node in nodes:
                keep[r, step.num_pending + node] = True
            path = [int(draft.tokens[r, n]) for n in nodes] if nodes else []
            self.sequences[r] += [*path, new_tokens[r]]
            self.pending[r] = [new_tokens[r]]
        self.cache.commit(keep)


def assert_close(got, want):
    assert torch.allclose(got.double(), want, atol=TOL), (got, want)


def test_tree_steps_over_padded_rows_match_recomputation():
    model = AttentionModel.random(5, seed=0)
    driver = Driver(model, [[0, 3, 1, 4], [2], [1, 1]])  # left padding
    # a tree per row: two root children, a grandchild under the second, padding in row 2
    draft = tree([[1, 2, 0], [4, 3, 3], [0, 4, -1]], [[-1, -1, 1], [-1, -1, 0], [-1, -1, -1]])
    step, logits = driver.step(draft)
    for r in range(3):
        assert_close(logits[r, 0], exact(model, driver.sequences[r]))
        paths = {0: [0], 1: [1], 2: [1, 2] if r == 0 else [0, 2] if r == 1 else None}
        for node, path in paths.items():
            if path is None:
                continue
            tokens = [int(draft.tokens[r, n]) for n in path]
            assert_close(logits[r, 1 + node], exact(model, driver.sequences[r] + tokens))
    # keep a path that skips a sibling: the sibling becomes a hole the next step skips
    driver.commit(step, [[1, 2], [0, 2], []], [3, 0, 2], draft)
    draft = tree([[2, 2], [1, 0], [3, 4]], [[-1, 0], [-1, -1], [-1, 0]])
    step, logits = driver.step(draft)
    for r in range(3):
        assert_close(logits[r, 0], exact(model, driver.sequences[r]))
    assert_close(logits[0, 2], exact(model, [*driver.sequences[0], 2, 2]))
    assert_close(logits[1, 2], exact(model, [*driver.sequences[1], 0]))
    assert_close(logits[2, 2], exact(model, [*driver.sequences[2], 3, 4]))


def test_rollback_fork_drop_and_compaction_keep_the_cache_exact():
    model = AttentionModel.random(6, seed=1)
    driver = Driver(model, [[0, 1, 2], [5, 4]])
    rng = random.Random(0)
    for _ in range(30):  # many rejected nodes: enough holes to trigger compaction
        draft = tree([[rng.randrange(6) for _ in range(3)] for _ in range(2)],
                     [[-1, -1, 0]] * 2)
        step, _ = driver.step(draft)
        driver.commit(step, [[], [0]], [rng.randrange(6), rng.randrange(6)], draft)
    assert driver.cache.length < sum(len(s) for s in driver.sequences)  # compacted
    driver.cache.rollback(torch.tensor([0, 0]))  # a no-op rollback still tidies
    step, logits = driver.step()
    for r in range(2):
        assert_close(logits[r, 0], exact(model, driver.sequences[r]))
    driver.commit(step, [[], []], [1, 2])
    # roll back row 0's last cached token and feed another one in its place
    driver.cache.rollback(torch.tensor([1, 0]))
    driver.sequences[0] = [*driver.sequences[0][:-2], 4]
    driver.pending[0] = [4]
    # reorder and fork rows: new rows are old rows 1, 0, 0
    order = [1, 0, 0]
    driver.cache.select_rows(torch.tensor(order))
    driver.sequences = [list(driver.sequences[i]) for i in order]
    driver.pending = [list(driver.pending[i]) for i in order]
    step, logits = driver.step(tree([[0], [3], [1]], [[-1], [-1], [-1]]))
    for r in range(3):
        assert_close(logits[r, 0], exact(model, driver.sequences[r]))
        assert_close(logits[r, 1], exact(model, [*driver.sequences[r], [0, 3, 1][r]]))


def test_logits_depend_on_positions_and_on_every_attended_token():
    model = AttentionModel.random(5, seed=2)
    rng = random.Random(1)
    for _ in range(20):
        sequence = [rng.randrange(5) for _ in range(rng.randint(2, 6))]
        base = exact(model, sequence)
        for i in range(len(sequence) - 1):  # any earlier token
            changed = list(sequence)
            changed[i] = (changed[i] + 1) % 5
            assert (exact(model, changed) - base).abs().max() > 1e-4
        # the same tokens one position later (a position off by one)
        shifted = model.inputs(torch.tensor([sequence]), torch.arange(1, len(sequence) + 1)[None])
        q, k, v = model.project(shifted)
        allowed = torch.ones((1, 1, len(sequence)), dtype=torch.bool)
        _, logits = model.head(shifted[:, -1:], model.attend(q[:, -1:], k, v, allowed))
        assert (logits[0, 0] - base).abs().max() > 1e-4


@pytest.mark.parametrize("vocab", [3, 4, 5, 8])
def test_no_next_token_distribution_is_near_one_hot(vocab):
    model = AttentionModel.random(vocab, seed=vocab)
    for length in (1, 2, 3):
        for sequence in itertools.product(range(vocab), repeat=length):
            probs = torch.softmax(exact(model, sequence), -1)
            assert float(probs.max()) <= 0.9 + 1e-6


def test_next_token_logits_reads_the_toy_models():
    markov = MarkovModel.random(4, seed=0)
    assert next_token_logits(markov, [2, 1]) == markov.log_probs[1].double().tolist()
    model = AttentionModel.random(4, seed=0)
    assert next_token_logits(model, [2, 1]) == model.exact_logits([2, 1])
    with pytest.raises(TypeError, match="no plain forward"):
        next_token_logits(object(), [1])


def test_hidden_states_cover_every_slot():
    model = AttentionModel.random(5, seed=0)
    cache = model.new_cache(2)
    step = build_step([[1, 2, 3], [4]], [0, 0], tree([[0, 1], [2, -1]], [[-1, 0], [-1, -1]]))
    result = model.forward(step, cache, hidden_states=True)
    assert result.hidden_states.shape == (2, 5, model.dim)
    assert result.logits.shape == (2, 3, 5) and result.logits.dtype == torch.float32
    with pytest.raises(TypeError, match="new_cache"):
        model.forward(step, MarkovModel.random(5).new_cache(2))
