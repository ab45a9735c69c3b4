"""Shared by every test suite (core, kernels, plugins): environment, hypothesis, models."""

from __future__ import annotations

import os

import torch

# Without a GPU the Triton kernels run in the interpreter (set before anything imports
# triton); with one, the same tests run the compiled kernels.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
from hypothesis import HealthCheck, settings

#: Devices the device-parametrized tests run on: the CPU always, CUDA when present.
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

# "ci" is deterministic (derandomize): a statistical test either always passes or always
# fails for a given code state, so a significance level never turns into flakiness.
settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=12,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile("dev", deadline=None, max_examples=50)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session", params=DEVICES)
def device(request):
    """Each available device in turn (``cpu``; ``cuda`` on a GPU machine)."""
    return request.param


@pytest.fixture(scope="session")
def smollm2():
    """An Engine over the embedded SmolLM2-135M-Instruct (float32), loaded once."""
    from decodekit import Engine

    return Engine()


@pytest.fixture(scope="session")
def tiny():
    """A tiny random Llama (vocab 97, 2 layers), loaded once."""
    from decodekit.testing import tiny_llama

    return tiny_llama()
