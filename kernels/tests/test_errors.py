"""Bad input gives a clear error that names the argument (and the row, where one is at fault)."""

from __future__ import annotations

import re

import decodekit_kernels as kernels
import pytest
import torch

BACKENDS = ["reference", "torch", "triton"]
LOGITS = torch.zeros(3, 40)
SEEDS = torch.arange(3)
BITMASK = torch.full((3, 2), -1, dtype=torch.int32)
HISTORY = torch.tensor([[1, 2], [3, 4], [5, 6]])


def meta(shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A tensor on the meta device: a device other than the logits' CPU."""
    return torch.empty(shape, dtype=dtype, device="meta")


# ------------------------------------------------------------------------ sample

SAMPLE_BAD = [
    pytest.param({"logits": torch.zeros(40)}, ValueError, "logits must have 2 dimensions", id="logits-1d"),
    pytest.param({"logits": torch.zeros(3, 40, dtype=torch.float64)}, TypeError,
                 "logits must be one of float32, float16, bfloat16, got torch.float64", id="logits-f64"),
    pytest.param({"logits": [[0.0, 1.0]]}, TypeError, "logits must be a torch.Tensor", id="logits-list"),
    pytest.param({"seeds": torch.arange(4)}, ValueError, r"seeds must have shape \(3,\)", id="seeds-rows"),
    pytest.param({"seeds": torch.zeros(3, dtype=torch.int32)}, TypeError,
                 "seeds must be one of int64", id="seeds-int32"),
    pytest.param({"seeds": torch.zeros(3, 1, dtype=torch.long)}, ValueError,
                 "seeds must have 1 dimensions", id="seeds-2d"),
    pytest.param({"temperature": -1.0}, ValueError, "temperature must be finite and >= 0", id="temperature"),
    pytest.param({"temperature": torch.ones(2)}, ValueError, r"temperature must be a scalar or have shape \(3,\)",
                 id="temperature-shape"),
    pytest.param({"top_k": -2}, ValueError, "top_k must be >= 0", id="top_k"),
    pytest.param({"top_p": 0.0}, ValueError, r"top_p must be in \(0, 1\]", id="top_p-zero"),
    pytest.param({"top_p": 1.5}, ValueError, r"top_p must be in \(0, 1\]", id="top_p-big"),
    pytest.param({"min_p": -0.1}, ValueError, r"min_p must be in \[0, 1\]", id="min_p"),
]


@pytest.mark.parametrize(("override", "error", "message"), SAMPLE_BAD)
def test_sample_rejects_bad_arguments(override: dict, error: type, message: str) -> None:
    """Each bad argument raises with a message naming it."""
    args = {"logits": LOGITS, "seeds": SEEDS, **override}
    logits, seeds = args.pop("logits"), args.pop("seeds")
    with pytest.raises(error, match=f"^sample: {message}"):
        kernels.sample(logits, seeds, **args)


@pytest.mark.parametrize(
    ("value", "what"), [(float("nan"), "NaN"), (float("inf"), r"\+inf")], ids=["nan", "inf"]
)
@pytest.mark.parametrize("op", ["sample", "probs_after_sampling_params", "penalties"])
def test_nan_and_plus_inf_logits_name_the_row(value: float, what: str, op: str) -> None:
    """NaN or +inf logits are errors naming the first bad row; -inf elsewhere is fine."""
    logits = torch.zeros(4, 40)
    logits[0, 3] = float("-inf")
    logits[2, 7] = value
    with pytest.raises(ValueError, match=f"^{op}: row 2 of the logits contains {what}"):
        if op == "sample":
            kernels.sample(logits, torch.arange(4))
        elif op == "penalties":
            kernels.penalties(logits, torch.zeros(4, 1, dtype=torch.long))
        else:
            kernels.probs_after_sampling_params(logits)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sample_all_masked_row_names_the_row(backend: str) -> None:
    """A row whose logits are all -inf allows no token: the error names that row."""
    logits = torch.zeros(4, 40)
    logits[3] = float("-inf")
    with pytest.raises(ValueError, match=r"^sample: row 3 allows no token \(all logits -inf\)"):
        kernels.sample(logits, torch.arange(4), backend=backend)


def test_seeds_on_another_device_are_rejected() -> None:
    """Seeds must be on the logits' device or on the CPU."""
    with pytest.raises(ValueError, match=r"^sample: seeds is on meta but the logits are on cpu$"):
        kernels.sample(LOGITS, meta((3,), torch.long))


@pytest.mark.parametrize("op", ["sample", "probs_after_sampling_params", "apply_token_bitmask",
                                "penalties"])
def test_unknown_backend_lists_the_valid_ones(op: str) -> None:
    """A misspelt backend raises ValueError listing every valid backend."""
    calls = {
        "sample": lambda: kernels.sample(LOGITS, SEEDS, backend="cuda"),
        "probs_after_sampling_params": lambda: kernels.probs_after_sampling_params(
            LOGITS, backend="cuda"
        ),
        "apply_token_bitmask": lambda: kernels.apply_token_bitmask(
            LOGITS.clone(), BITMASK, backend="cuda"
        ),
        "penalties": lambda: kernels.penalties(LOGITS, HISTORY, backend="cuda"),
    }
    expected = f"{op}: unknown backend 'cuda'; choose one of auto, reference, torch, triton"
    with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
        calls[op]()


# ---------------------------------------------------------- apply_token_bitmask

BITMASK_BAD = [
    pytest.param({"bitmask": torch.zeros(3, 2, dtype=torch.int64)}, TypeError,
                 "bitmask must be one of int32, got torch.int64", id="bitmask-int64"),
    pytest.param({"bitmask": torch.zeros(2, 2, dtype=torch.int32)}, ValueError,
                 "bitmask has 2 rows but the logits have 3", id="bitmask-rows"),
    pytest.param({"bitmask": torch.zeros(3, dtype=torch.int32)}, ValueError,
                 "bitmask must have 2 dimensions", id="bitmask-1d"),
    pytest.param({"bitmask": meta((3, 2), torch.int32)}, ValueError,
                 "bitmask is on meta but the logits are on cpu", id="bitmask-device"),
    pytest.param({"logits": torch.zeros(3, 40, dtype=torch.int32)}, TypeError,
                 "logits must be one of float32", id="logits-int"),
    pytest.param({"indices": [0, 3]}, ValueError, r"indices must lie in \[0, 3\)", id="indices-range"),
    pytest.param({"indices": [-1]}, ValueError, r"indices must lie in \[0, 3\)", id="indices-negative"),
]


@pytest.mark.parametrize(("override", "error", "message"), BITMASK_BAD)
def test_bitmask_rejects_bad_arguments(override: dict, error: type, message: str) -> None:
    """Each bad argument raises with a message naming it; the logits stay untouched."""
    args = {"logits": LOGITS.clone(), "bitmask": BITMASK, **override}
    logits, bitmask = args.pop("logits"), args.pop("bitmask")
    with pytest.raises(error, match=f"^apply_token_bitmask: {message}"):
        kernels.apply_token_bitmask(logits, bitmask, **args)
    if logits.dtype == torch.float32:
        assert bool((logits == 0).all())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("indices", [None, [2, 1]], ids=["all-rows", "indices"])
def test_bitmask_allowing_nothing_names_the_row(backend: str, indices: list[int] | None) -> None:
    """check_nonempty: a row left with no allowed token raises, naming that row."""
    bitmask = BITMASK.clone()
    bitmask[1] = 0
    with pytest.raises(ValueError, match=r"^apply_token_bitmask: the bitmask allows no token in row 1$"):
        kernels.apply_token_bitmask(LOGITS.clone(), bitmask, indices=indices, backend=backend)
    # without the check the row is simply all -inf
    logits = LOGITS.clone()
    kernels.apply_token_bitmask(logits, bitmask, check_nonempty=False, backend=backend)
    assert bool(torch.isneginf(logits[1]).all()) and bool((logits[0] == 0).all())


# ------------------------------------------------------------------- penalties

PENALTY_BAD = [
    pytest.param({"token_ids": torch.zeros(3, 2)}, TypeError,
                 "token_ids must be one of int64, int32, got torch.float32", id="ids-float"),
    pytest.param({"token_ids": torch.zeros(2, 2, dtype=torch.long)}, ValueError,
                 "token_ids has 2 rows, the logits 3", id="ids-rows"),
    pytest.param({"token_ids": torch.tensor([[0, 40], [0, 0], [0, 0]])}, ValueError,
                 r"token_ids must lie in \[0, 40\)", id="ids-range"),
    pytest.param({"token_ids": meta((3, 2), torch.long)}, ValueError,
                 "token_ids is on meta but the logits are on cpu", id="ids-device"),
    pytest.param({"history_mask": torch.ones(3, 3, dtype=torch.bool)}, ValueError,
                 r"history_mask must have shape \(3, 2\), got \(3, 3\)", id="mask-shape"),
    pytest.param({"history_mask": torch.ones(3, 2)}, TypeError, "history_mask must be one of bool",
                 id="mask-dtype"),
    pytest.param({"repetition_penalty": 0.0}, ValueError, "repetition_penalty must be > 0",
                 id="repetition"),
    pytest.param({"presence_penalty": torch.ones(4)}, ValueError,
                 r"presence_penalty must be a scalar or have shape \(3,\)", id="presence-shape"),
    pytest.param({"logits": torch.zeros(3, 40, 1)}, ValueError, "logits must have 2 dimensions",
                 id="logits-3d"),
]


@pytest.mark.parametrize(("override", "error", "message"), PENALTY_BAD)
def test_penalties_reject_bad_arguments(override: dict, error: type, message: str) -> None:
    """Each bad argument raises with a message naming it."""
    args = {"logits": LOGITS, "token_ids": HISTORY, **override}
    logits, token_ids = args.pop("logits"), args.pop("token_ids")
    with pytest.raises(error, match=f"^penalties: {message}"):
        kernels.penalties(logits, token_ids, **args)


def test_padding_outside_the_vocabulary_is_fine_when_masked() -> None:
    """Out-of-range ids are an error only where history_mask is set."""
    ids = torch.tensor([[1, -1], [2, 99], [3, 3]])
    mask = torch.tensor([[True, False], [True, False], [True, True]])
    out = kernels.penalties(LOGITS + 1.0, ids, history_mask=mask, repetition_penalty=2.0)
    assert out[0, 1] == 0.5 and out[1, 2] == 0.5 and out[2, 3] == 0.5
    assert int((out == 0.5).sum()) == 3


@pytest.mark.parametrize("op", ["sample", "apply_token_bitmask", "penalties"])
def test_triton_backend_needs_cuda_or_the_interpreter(op: str, monkeypatch) -> None:
    """Without TRITON_INTERPRET, backend='triton' on CPU tensors explains how to run it."""
    import decodekit_kernels._triton as triton_module

    monkeypatch.setattr(triton_module, "triton_interpret", False)
    calls = {
        "sample": lambda: kernels.sample(LOGITS, SEEDS, backend="triton"),
        "apply_token_bitmask": lambda: kernels.apply_token_bitmask(
            LOGITS.clone(), BITMASK, backend="triton"
        ),
        "penalties": lambda: kernels.penalties(LOGITS, HISTORY, backend="triton"),
    }
    with pytest.raises(ValueError, match=f"^{op}: backend='triton' needs CUDA tensors.*TRITON_INTERPRET=1"):
        calls[op]()
