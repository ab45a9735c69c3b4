"""Fixtures of the decodekit-json tests: SmolLM2's tokenizer without loading the weights."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: The shared data folder lies beside the repository (``../shared/data``); DECODEKIT_DATA
#: points elsewhere.
REPO = Path(__file__).resolve().parents[3]
DATA = Path(os.environ.get("DECODEKIT_DATA") or REPO.parent / "shared" / "data")
MASKBENCH = DATA / "maskbench" / "dev.jsonl"


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """SmolLM2-135M-Instruct's tokenizer (from the prepared embedded model directory)."""
    from transformers import AutoTokenizer

    from decodekit.embedded import prepare_embedded_model

    return AutoTokenizer.from_pretrained(prepare_embedded_model(), local_files_only=True)


@pytest.fixture(scope="session")
def maskbench_entries():
    """The MaskBench dev split (571 schemas).

    Outside CI the tests that need it skip when the data set is absent; under CI (``CI``
    set) a missing data set is an error, so it never passes by skipping.
    """
    from decodekit_json import maskbench

    if not MASKBENCH.exists():
        message = f"MaskBench data not found at {MASKBENCH} (set DECODEKIT_DATA)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return maskbench.load(MASKBENCH)
