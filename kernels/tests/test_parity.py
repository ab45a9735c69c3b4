"""Every backend of every op against its torch reference, token for token.

The Triton kernels run on CPU tensors under ``TRITON_INTERPRET=1`` (the root conftest sets
it before Triton is imported); those tests are marked ``interpreter``. The interpreter is
slow (about a second per row at V=32001 when top-k / top-p bisect), so large vocabularies
use one or two rows and the 33-row batches use V=111. The vectorized torch path (the CPU
default) is checked against the same reference on the same inputs.

Inputs cover odd vocabulary sizes (111, 32001, 49152), batch 1, 2 and 33, float32 /
bfloat16 / float16 logits (bfloat16 makes many exact ties, which exercises the tie rules),
masked (-inf) tokens, and non-contiguous logits: a transposed view and a column slice.
"""

from __future__ import annotations

import decodekit_kernels as kernels
import pytest
import torch

DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}
LAYOUTS = ("contiguous", "transposed", "column-slice")


# ----------------------------------------------------------------------- helpers


def make_logits(
    rows: int, vocab: int, dtype: torch.dtype, layout: str, *, seed: int = 0, masked: float = 0.1
) -> torch.Tensor:
    """Random logits ``[rows, vocab]`` with the given memory layout.

    Row scales cycle through 3, 0.1 and 1 (peaked, nearly flat and moderate rows: a flat
    row pushes the vectorized top-p search past its candidate window), and a fraction
    ``masked`` of the tokens is ``-inf`` (never a whole row).
    """
    gen = torch.Generator().manual_seed(seed)
    scales = torch.tensor([3.0, 0.1, 1.0]).repeat(rows // 3 + 1)[:rows].unsqueeze(1)
    values = torch.randn(rows, vocab, generator=gen) * scales
    drop = torch.rand(rows, vocab, generator=gen) < masked
    drop[:, 0] = False
    values = values.masked_fill(drop, float("-inf")).to(dtype)
    if layout == "contiguous":
        out = values.contiguous()
    elif layout == "transposed":
        # column r of a [vocab, rows + 1] buffer: strides (1, rows + 1)
        tall = torch.zeros((vocab, rows + 1), dtype=dtype)
        tall[:, :rows] = values.t()
        out = tall[:, :rows].t()
    elif layout == "column-slice":
        wide = torch.full((rows, vocab + 9), 7.0, dtype=dtype)
        wide[:, 5 : vocab + 5] = values
        out = wide[:, 5 : vocab + 5]
    else:  # pragma: no cover - a typo in a parametrization
        raise ValueError(layout)
    assert torch.equal(out, values)
    # (a one-row column slice counts as contiguous: it is just an offset)
    assert layout == "contiguous" or rows == 1 or not out.is_contiguous()
    return out


def make_seeds(rows: int, seed: int = 1) -> torch.Tensor:
    """``rows`` int64 seeds spread over the whole int64 range (negative ones included)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(-(2**62), 2**62, (rows,), generator=gen, dtype=torch.long)


def cycle(values: list[float] | list[int], rows: int, dtype: torch.dtype) -> torch.Tensor:
    """``values`` repeated to length ``rows``, as a tensor parameter."""
    return torch.tensor([values[i % len(values)] for i in range(rows)], dtype=dtype)


def mixed_params(rows: int) -> dict[str, torch.Tensor]:
    """Per-row sampling parameters whose cycles (4, 5, 3, 3) give every combination.

    Temperatures include 0 (argmax); top-k includes 1 and a k beyond most vocabularies.
    """
    return {
        "temperature": cycle([1.0, 0.7, 0.0, 1.6], rows, torch.float32),
        "top_k": cycle([0, 1, 7, 50, 100000], rows, torch.int32),
        "top_p": cycle([1.0, 0.9, 0.3], rows, torch.float32),
        "min_p": cycle([0.0, 0.05, 0.3], rows, torch.float32),
    }


def assert_tokens_equal(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    """Fail with a table of the rows whose tokens differ."""
    assert actual.dtype == torch.long, f"{what}: dtype {actual.dtype}, want int64"
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)}"
    bad = (actual != expected).nonzero().flatten().tolist()
    if bad:
        table = "\n".join(
            f"  row {r}: got {int(actual[r])}, reference {int(expected[r])}" for r in bad[:10]
        )
        raise AssertionError(f"{what}: {len(bad)} of {actual.numel()} rows differ\n{table}")


def assert_close_verbose(
    actual: torch.Tensor, expected: torch.Tensor, what: str, *, atol: float, rtol: float
) -> None:
    """Like ``torch.testing.assert_close`` but lists the worst offending entries."""
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} vs {expected.dtype}"
    a, e = actual.double(), expected.double()
    same_inf = (a == e) & torch.isinf(e)
    err = torch.where(same_inf, 0.0, (a - e).abs() - rtol * e.abs())
    bad = (err > atol) | (torch.isnan(a) != torch.isnan(e))
    if bool(bad.any()):
        where = bad.nonzero()[:10].tolist()
        table = "\n".join(
            f"  [{r}, {c}]: got {float(a[r, c])!r}, reference {float(e[r, c])!r}" for r, c in where
        )
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {a.numel()} entries differ (atol {atol}, rtol {rtol})"
            f"\n{table}"
        )


# ------------------------------------------------------------- parametrizations

# (rows, vocab) sizes: the interpreter is slow, so large vocabularies get few rows
SHAPES = [
    pytest.param(33, 111, id="rows33-V111"),
    pytest.param(1, 32001, id="rows1-V32001"),
    pytest.param(1, 49152, id="rows1-V49152"),
]


def _cases() -> list:
    """Every dtype (contiguous) and each non-contiguous layout, at V=111 and V=32001.

    V=49152 (the slowest in the interpreter) gets one float32 and one bfloat16 transposed
    case.
    """
    cases = []
    for shape in SHAPES:
        rows, vocab = shape.values
        combos = [(d, "contiguous") for d in DTYPES] + [("bf16", "transposed"), ("f32", "column-slice")]
        if vocab == 49152:
            combos = [("f32", "contiguous"), ("bf16", "transposed")]
        for dname, layout in combos:
            suffix = "" if layout == "contiguous" else f"-{layout}"
            cases.append(pytest.param(rows, vocab, dname, layout, id=f"{shape.id}-{dname}{suffix}"))
    return cases


CASES = _cases()


def large_row_params(rows: int) -> dict[str, torch.Tensor]:
    """Parameters for the 1- and 2-row cases: every truncation on at once, then top-p alone."""
    return {
        "temperature": cycle([0.8, 1.3], rows, torch.float32),
        "top_k": cycle([2000, 0], rows, torch.int32),
        "top_p": cycle([0.95, 0.99], rows, torch.float32),
        "min_p": cycle([0.001, 0.0], rows, torch.float32),
    }


def params_for(rows: int) -> dict[str, torch.Tensor]:
    """The per-row parameters a parity case uses."""
    return mixed_params(rows) if rows > 2 else large_row_params(rows)


# ----------------------------------------------------------------------- sample


def _sample_parity(backend: str, rows: int, vocab: int, dname: str, layout: str) -> None:
    logits = make_logits(rows, vocab, DTYPES[dname], layout)
    seeds = make_seeds(rows)
    params = params_for(rows)
    expected = kernels.sample(logits, seeds, backend="reference", **params)
    actual = kernels.sample(logits, seeds, backend=backend, **params)
    assert_tokens_equal(actual, expected, f"sample[{backend}]")
    # the drawn tokens are allowed ones
    assert bool((logits.float().gather(1, actual.unsqueeze(1)) > float("-inf")).all())


@pytest.mark.interpreter
@pytest.mark.parametrize(("rows", "vocab", "dname", "layout"), CASES)
def test_sample_triton_matches_reference(rows: int, vocab: int, dname: str, layout: str) -> None:
    """Identical tokens from the Triton kernel and the reference for identical seeds."""
    _sample_parity("triton", rows, vocab, dname, layout)


@pytest.mark.parametrize(("rows", "vocab", "dname", "layout"), CASES)
def test_sample_torch_matches_reference(rows: int, vocab: int, dname: str, layout: str) -> None:
    """Identical tokens from the vectorized torch path and the reference."""
    _sample_parity("torch", rows, vocab, dname, layout)


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({}, id="plain"),
        pytest.param({"temperature": 0.5}, id="temperature"),
        pytest.param({"top_k": 3}, id="top_k"),
        pytest.param({"top_p": 0.999}, id="top_p-past-candidates"),
        pytest.param({"min_p": 0.5}, id="min_p"),
        pytest.param({"temperature": 0.0}, id="argmax"),
    ],
)
def test_sample_torch_matches_reference_scalar_params(params: dict) -> None:
    """Scalar parameters (one setting for the batch), including a row mix of flat logits."""
    logits = make_logits(9, 5003, torch.float32, "contiguous", seed=3)
    seeds = make_seeds(9, seed=4)
    expected = kernels.sample(logits, seeds, backend="reference", **params)
    assert_tokens_equal(kernels.sample(logits, seeds, backend="torch", **params), expected, "torch")


def test_sample_ties_break_to_lowest_index() -> None:
    """Argmax (temperature 0) of a row of equal logits is token 0 on every backend."""
    logits = torch.zeros(3, 50)
    logits[1, 7] = logits[1, 9] = 1.0
    expected = torch.tensor([0, 7, 0])
    for backend in ("reference", "torch", "triton"):
        got = kernels.sample(logits, make_seeds(3), temperature=0.0, backend=backend)
        assert_tokens_equal(got, expected, backend)


def test_sample_top_k_keeps_ties_at_the_kth_value() -> None:
    """top_k=2 over [5, 3, 3, 3, 0]: the three 3s tie at the 2nd value and all stay."""
    logits = torch.tensor([[5.0, 3.0, 3.0, 3.0, 0.0]]) - 5.0
    for backend in ("reference", "torch", "triton"):
        probs = kernels.probs_after_sampling_params(logits, top_k=2, backend=backend)
        assert probs[0, :4].gt(0).all() and probs[0, 4] == 0, (backend, probs)


def test_sample_same_seed_same_token_different_seed_varies() -> None:
    """Seeds are the only randomness: equal seeds give equal tokens, others vary."""
    logits = torch.zeros(64, 1000)
    same = kernels.sample(logits, torch.full((64,), 12345, dtype=torch.long))
    assert bool((same == same[0]).all())
    varied = kernels.sample(logits, torch.arange(64))
    assert varied.unique().numel() > 50


# ---------------------------------------------------- probs_after_sampling_params


def _probs_parity(backend: str, rows: int, vocab: int, dname: str, layout: str) -> None:
    logits = make_logits(rows, vocab, DTYPES[dname], layout)
    params = params_for(rows)
    expected = kernels.probs_after_sampling_params(logits, backend="reference", **params)
    actual = kernels.probs_after_sampling_params(logits, backend=backend, **params)
    # the same tokens are kept, and the probabilities agree to float32 rounding
    support = actual > 0
    if not torch.equal(support, expected > 0):
        diff = (support != (expected > 0)).nonzero()[:10].tolist()
        raise AssertionError(f"probs[{backend}]: kept sets differ at {diff}")
    assert_close_verbose(actual, expected, f"probs[{backend}]", atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(actual.sum(-1), torch.ones(rows), atol=1e-4, rtol=0)


PROB_CASES = [c for c in CASES if c.values[3] == "contiguous" or c.values[1] == 49152]


@pytest.mark.interpreter
@pytest.mark.parametrize(("rows", "vocab", "dname", "layout"), PROB_CASES)
def test_probs_triton_matches_reference(rows: int, vocab: int, dname: str, layout: str) -> None:
    """The Triton kernel's truncated distribution equals the reference's."""
    _probs_parity("triton", rows, vocab, dname, layout)


@pytest.mark.parametrize(("rows", "vocab", "dname", "layout"), CASES)
def test_probs_torch_matches_reference(rows: int, vocab: int, dname: str, layout: str) -> None:
    """The vectorized truncated distribution equals the reference's."""
    _probs_parity("torch", rows, vocab, dname, layout)


# --------------------------------------------------------- apply_token_bitmask


def make_bitmask(rows: int, words: int, *, seed: int = 2) -> torch.Tensor:
    """Random int32 words (all 32 bits, sign bit included); row 0 allows only token 0."""
    gen = torch.Generator().manual_seed(seed)
    bits = torch.randint(-(2**31), 2**31, (rows, words), generator=gen, dtype=torch.int64)
    bits[0] = 0
    bits[0, 0] = 1
    return bits.to(torch.int32)


BITMASK_CASES = [
    pytest.param(33, 111, 4, "f32", "contiguous", None, id="rows33-V111-f32"),
    pytest.param(33, 111, 4, "bf16", "transposed", [0, 5, 32, 7], id="rows33-V111-bf16-T-indices"),
    pytest.param(33, 111, 3, "f16", "column-slice", None, id="rows33-V111-f16-slice-narrow-mask"),
    pytest.param(1, 32001, 1001, "bf16", "contiguous", None, id="rows1-V32001-bf16"),
    pytest.param(2, 32001, 1000, "f32", "column-slice", None, id="rows2-V32001-f32-narrow-mask"),
    pytest.param(2, 49152, 1536, "f16", "transposed", [1], id="rows2-V49152-f16-T-indices"),
]


def _bitmask_parity(backend, rows, vocab, words, dname, layout, indices) -> None:
    logits = make_logits(rows, vocab, DTYPES[dname], layout, masked=0.0)
    bitmask = make_bitmask(rows, words)
    expected = logits.clone()
    kernels.apply_token_bitmask(expected, bitmask, indices=indices, backend="reference")
    before = logits.clone()
    out = kernels.apply_token_bitmask(logits, bitmask, indices=indices, backend=backend)
    assert out is logits, "the op returns its (in-place) input"
    assert_close_verbose(logits.float(), expected.float(), f"bitmask[{backend}]", atol=0, rtol=0)
    # rows outside `indices` are untouched; the reference masks exactly the cleared bits
    allowed = kernels.unpack_bitmask(bitmask, vocab)
    chosen = torch.zeros(rows, dtype=torch.bool)
    chosen[indices if indices is not None else slice(None)] = True
    want = torch.where(allowed | ~chosen.unsqueeze(1), before.float(), float("-inf"))
    assert torch.equal(expected.float(), want)


@pytest.mark.interpreter
@pytest.mark.parametrize(("rows", "vocab", "words", "dname", "layout", "indices"), BITMASK_CASES)
def test_bitmask_triton_matches_reference(rows, vocab, words, dname, layout, indices) -> None:
    """The Triton kernel masks exactly the reference's tokens, in place, any layout."""
    _bitmask_parity("triton", rows, vocab, words, dname, layout, indices)


@pytest.mark.parametrize(("rows", "vocab", "words", "dname", "layout", "indices"), BITMASK_CASES)
def test_bitmask_torch_matches_reference(rows, vocab, words, dname, layout, indices) -> None:
    """The vectorized path masks exactly the reference's tokens, in place, any layout."""
    _bitmask_parity("torch", rows, vocab, words, dname, layout, indices)


def test_unpack_bitmask_bit_order() -> None:
    """Bit j of word w is token 32 w + j; the sign bit is token 31; tokens past 32 W are off."""
    bitmask = torch.tensor([[1 | (1 << 5), -(2**31)]], dtype=torch.int32)
    allowed = kernels.unpack_bitmask(bitmask, 70)
    assert allowed[0].nonzero().flatten().tolist() == [0, 5, 63]


# ------------------------------------------------------------------- penalties


def make_history(rows: int, vocab: int, width: int, *, seed: int = 5):
    """Token histories with repeats, right padding and per-row prompt lengths."""
    gen = torch.Generator().manual_seed(seed)
    # a small pool per row so that tokens repeat
    pool = torch.randint(0, vocab, (rows, 12), generator=gen)
    picks = torch.randint(0, 12, (rows, width), generator=gen)
    token_ids = pool.gather(1, picks)
    lengths = torch.randint(0, width + 1, (rows,), generator=gen)
    mask = torch.arange(width).unsqueeze(0) < lengths.unsqueeze(1)
    token_ids = torch.where(mask, token_ids, -1)  # padding outside the vocabulary
    prompt = (lengths * torch.rand(rows, generator=gen)).long()
    return token_ids, mask, prompt


PENALTY_CASES = [
    pytest.param(33, 111, 20, "f32", "contiguous", id="rows33-V111-f32"),
    pytest.param(33, 111, 20, "bf16", "transposed", id="rows33-V111-bf16-T"),
    pytest.param(33, 111, 0, "f16", "column-slice", id="rows33-V111-f16-slice-empty-history"),
    pytest.param(1, 32001, 300, "f16", "contiguous", id="rows1-V32001-f16"),
    pytest.param(2, 49152, 64, "f32", "column-slice", id="rows2-V49152-f32-slice"),
]


def _penalty_parity(backend, rows, vocab, width, dname, layout) -> None:
    logits = make_logits(rows, vocab, DTYPES[dname], layout, masked=0.02)
    token_ids, mask, prompt = make_history(rows, vocab, width)
    params = {
        "repetition_penalty": cycle([1.0, 1.3, 0.8], rows, torch.float32),
        "presence_penalty": cycle([0.0, 0.5, -0.25, 1.0], rows, torch.float32),
        "frequency_penalty": cycle([0.0, 0.2, 0.7, -0.1, 0.3], rows, torch.float32),
        "history_mask": mask,
        "prompt_lengths": prompt,
    }
    before = logits.clone()
    expected = kernels.penalties(logits, token_ids, backend="reference", **params)
    actual = kernels.penalties(logits, token_ids, backend=backend, **params)
    assert torch.equal(logits, before), "penalties must not modify its input"
    assert actual.dtype == logits.dtype
    assert_close_verbose(actual.float(), expected.float(), f"penalties[{backend}]", atol=0, rtol=0)


@pytest.mark.interpreter
@pytest.mark.parametrize(("rows", "vocab", "width", "dname", "layout"), PENALTY_CASES)
def test_penalties_triton_matches_reference(rows, vocab, width, dname, layout) -> None:
    """The Triton kernels give the reference's penalized logits bit for bit."""
    _penalty_parity("triton", rows, vocab, width, dname, layout)


@pytest.mark.parametrize(("rows", "vocab", "width", "dname", "layout"), PENALTY_CASES)
def test_penalties_torch_matches_reference(rows, vocab, width, dname, layout) -> None:
    """The vectorized path gives the reference's penalized logits bit for bit."""
    _penalty_parity("torch", rows, vocab, width, dname, layout)


def _counts_of(token_ids, mask, prompt, vocab):
    """Occurrences of each token in each history, and in its generated part (plain loops)."""
    seen = torch.zeros((token_ids.shape[0], vocab), dtype=torch.int32)
    generated = torch.zeros_like(seen)
    for r in range(token_ids.shape[0]):
        for position, (token, valid) in enumerate(zip(token_ids[r], mask[r], strict=True)):
            if valid:
                seen[r, token] += 1
                generated[r, token] += int(position >= int(prompt[r]))
    return seen, generated


@pytest.mark.parametrize(
    "backend", ["reference", "torch", pytest.param("triton", marks=pytest.mark.interpreter)]
)
@pytest.mark.parametrize("vocab", [111, 2100])
def test_penalties_from_counts_equal_penalties_from_the_whole_history(backend, vocab) -> None:
    """Counts of a sequence's start plus the rest as history: the same logits, bit for bit.

    Each of 6 logits rows (several per sequence, like draft nodes) continues one of 3
    sequences, whose prefix is given only as counts; its own tokens are its history.
    """
    sequences, extra = 3, 6
    prefix, prefix_mask, prefix_prompt = make_history(sequences, vocab, 40, seed=7)
    seen, generated = _counts_of(prefix, prefix_mask, prefix_prompt, vocab)
    count_rows = torch.tensor([0, 0, 1, 2, 2, 2])
    tail = torch.randint(0, vocab, (extra, 3), generator=torch.Generator().manual_seed(8))
    tail_mask = torch.tensor([[1, 1, 1], [1, 0, 0], [1, 1, 0], [0, 0, 0], [1, 1, 1], [1, 0, 0]],
                             dtype=torch.bool)
    whole = torch.full((extra, 43), -1, dtype=torch.long)
    whole_mask = torch.zeros((extra, 43), dtype=torch.bool)
    for r, c in enumerate(count_rows.tolist()):  # the prefix's valid tokens, then the tail
        tokens = [*prefix[c][prefix_mask[c]].tolist(), *tail[r][tail_mask[r]].tolist()]
        whole[r, : len(tokens)] = torch.tensor(tokens)
        whole_mask[r, : len(tokens)] = True
    params = {"repetition_penalty": 1.3, "presence_penalty": 0.5, "frequency_penalty": 0.2}
    logits = make_logits(extra, vocab, torch.float32, "contiguous", masked=0.02)
    expected = kernels.penalties(
        logits, whole, history_mask=whole_mask, prompt_lengths=prefix_prompt[count_rows],
        backend="reference", **params,
    )
    actual = kernels.penalties(
        logits, tail, history_mask=tail_mask, seen_counts=seen, generated_counts=generated,
        count_rows=count_rows, backend=backend, **params,
    )
    assert_close_verbose(actual, expected, f"penalties counts[{backend}]", atol=0, rtol=0)
    assert not torch.equal(actual, logits)
    # one counts row per logits row needs no count_rows
    direct = kernels.penalties(logits[:3], tail[:3, :0], seen_counts=seen,
                               generated_counts=generated, backend=backend, **params)
    rows = torch.arange(3)
    via_rows = kernels.penalties(logits[:3], tail[:3, :0], seen_counts=seen,
                                 generated_counts=generated, count_rows=rows, backend=backend,
                                 **params)
    assert torch.equal(direct, via_rows)


def test_penalties_counts_errors_name_the_argument() -> None:
    logits, seen = torch.zeros(2, 5), torch.zeros(2, 5, dtype=torch.int32)
    empty = torch.zeros(2, 0, dtype=torch.long)
    with pytest.raises(ValueError, match="seen_counts and generated_counts are given together"):
        kernels.penalties(logits, empty, seen_counts=seen)
    with pytest.raises(ValueError, match="seen_counts covers 4 tokens, the logits 5"):
        kernels.penalties(logits, empty, seen_counts=seen[:, :4], generated_counts=seen[:, :4])
    with pytest.raises(ValueError, match="seen_counts has 1 rows, the logits 2; pass count_rows"):
        kernels.penalties(logits, empty, seen_counts=seen[:1], generated_counts=seen[:1])
    with pytest.raises(ValueError, match=r"count_rows must lie in \[0, 2\)"):
        kernels.penalties(logits, empty, seen_counts=seen, generated_counts=seen,
                          count_rows=torch.tensor([0, 2]))
    with pytest.raises(ValueError, match=r"generated_counts must lie in \[0, seen_counts\]"):
        kernels.penalties(logits, empty, seen_counts=seen, generated_counts=seen + 1)
    with pytest.raises(ValueError, match="count_rows needs seen_counts"):
        kernels.penalties(logits, empty, count_rows=torch.tensor([0, 1]))


def test_penalties_reference_matches_plain_python() -> None:
    """The kernel reference agrees with :func:`decodekit.testing.reference_penalties`."""
    from decodekit.testing import reference_penalties

    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0, -2.0, 0.0]])
    history = [3, 1, 3, 0, 3, 5]
    got = kernels.penalties(
        logits, torch.tensor([history]), repetition_penalty=1.5, presence_penalty=0.25,
        frequency_penalty=0.5, prompt_lengths=torch.tensor([2]), backend="reference",
    )
    want = reference_penalties(
        logits[0].tolist(), history, 2, repetition_penalty=1.5, presence_penalty=0.25,
        frequency_penalty=0.5,
    )
    torch.testing.assert_close(got[0], torch.tensor(want))
    # token 3: seen, then 2 generated occurrences: 3 / 1.5 - 0.25 - 2 * 0.5
    assert float(got[0, 3]) == pytest.approx(3.0 / 1.5 - 0.25 - 1.0)


# -------------------------------------------------------------------- noise


def test_noise_is_the_documented_hash() -> None:
    """Uniforms are in (0, 1), depend on every input, and match a plain-Python murmur3."""
    mask = 0xFFFFFFFF

    def plain(seed: int, counter: int, token: int) -> float:
        s = seed & 0xFFFFFFFFFFFFFFFF
        x = (s & mask) ^ (((s >> 32) * 0x9E3779B9) & mask)
        x ^= (counter * 0x85EBCA6B) & mask
        x ^= (token * 0xC2B2AE35) & mask
        x ^= x >> 16
        x = (x * 0x85EBCA6B) & mask
        x ^= x >> 13
        x = (x * 0xC2B2AE35) & mask
        x ^= x >> 16
        return ((x >> 8) + 0.5) / 2**24

    seeds = torch.tensor([0, 1, -1, 2**62 + 12345, -(2**63)])
    tokens = torch.arange(0, 2**31 - 1, 2**26)
    got = kernels.uniforms(seeds.unsqueeze(1), 3, tokens.unsqueeze(0))
    want = torch.tensor(
        [[plain(int(s), 3, int(t)) for t in tokens] for s in seeds], dtype=torch.float32
    )
    assert torch.equal(got, want)
    assert bool(((got > 0) & (got < 1)).all())
    assert not torch.equal(got, kernels.uniforms(seeds.unsqueeze(1), 4, tokens.unsqueeze(0)))


def test_gumbel_rows_is_gumbel_over_every_token() -> None:
    """The cached full-vocabulary noise of the vectorized path equals ``gumbel`` bit for bit."""
    from decodekit_kernels._noise import gumbel_rows

    seeds = make_seeds(5)
    for vocab in (111, 4099):
        want = kernels.gumbel(seeds.unsqueeze(1), 2, torch.arange(vocab).unsqueeze(0))
        assert torch.equal(gumbel_rows(seeds, 2, vocab), want)


def test_seeds_from_generators_is_reproducible() -> None:
    """Equal generator states give equal seeds; different ones differ; int64 ``[rows]``."""

    def make(seed: int) -> torch.Generator:
        return torch.Generator().manual_seed(seed)

    a = kernels.seeds_from_generators([make(7), make(7), make(8)])
    b = kernels.seeds_from_generators([make(7), make(7), make(8)])
    assert a.dtype == torch.long and a.shape == (3,)
    assert torch.equal(a, b) and int(a[0]) == int(a[1]) != int(a[2])


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"top_k": 1100}, id="top_k-ties-past-window"),
        pytest.param({"top_k": 5}, id="top_k-ties-in-window"),
        pytest.param({"top_p": 0.5}, id="top_p-ties"),
        pytest.param({"min_p": 0.9}, id="min_p-ties"),
    ],
)
def test_sample_torch_ties_across_the_candidate_window(params: dict) -> None:
    """1500 tokens tie at the top, more than the vectorized path's candidate window.

    The kept set then extends past the window, so the torch path must fall back to the
    whole row; tokens still equal the reference's, and all of the tied tokens get drawn.
    """
    from decodekit_kernels.sample.vectorized import CANDIDATES

    assert CANDIDATES < 1500
    logits = torch.zeros(64, 3001)
    logits[:, 1::2] = 1.0  # tokens 1, 3, ..., 2999 tie at the top
    seeds = make_seeds(64, seed=9)
    expected = kernels.sample(logits, seeds, backend="reference", **params)
    assert_tokens_equal(kernels.sample(logits, seeds, backend="torch", **params), expected, "torch")
    if params != {"top_k": 5}:
        assert bool((expected % 2 == 1).all()) and int(expected.max()) > 2 * CANDIDATES


def test_sample_torch_top_p_beyond_every_window() -> None:
    """Flat rows at V=20011 with top-p 0.99 keep more tokens than any top-k window.

    The vectorized path then sorts those rows; a peaked row in the same batch still uses
    its window. Tokens and probabilities equal the reference's.
    """
    from decodekit_kernels.sample.vectorized import WINDOWS

    logits = make_logits(3, 20011, torch.float32, "contiguous", seed=12)
    seeds = make_seeds(3, seed=13)
    params = {"top_p": 0.99, "temperature": 0.9}
    probs = kernels.probs_after_sampling_params(logits, backend="reference", **params)
    assert int((probs[1] > 0).sum()) > max(WINDOWS), "row 1 should keep more than the windows"
    expected = kernels.sample(logits, seeds, backend="reference", **params)
    assert_tokens_equal(kernels.sample(logits, seeds, backend="torch", **params), expected, "torch")
    assert_close_verbose(
        kernels.probs_after_sampling_params(logits, backend="torch", **params), probs, "probs",
        atol=1e-7, rtol=1e-5,
    )
