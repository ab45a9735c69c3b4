"""Fixtures of the decodekit-json tests: SmolLM2's tokenizer without loading the weights."""

from __future__ import annotations

from pathlib import Path

import pytest

MASKBENCH = Path("/work/shared/data/maskbench/dev.jsonl")


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """SmolLM2-135M-Instruct's tokenizer (from the prepared embedded model directory)."""
    from transformers import AutoTokenizer

    from decodekit.embedded import prepare_embedded_model

    return AutoTokenizer.from_pretrained(prepare_embedded_model(), local_files_only=True)


@pytest.fixture(scope="session")
def maskbench_entries():
    """The MaskBench dev split (571 schemas); skips when the data set is absent."""
    from decodekit_json import maskbench

    if not MASKBENCH.exists():
        pytest.skip(f"MaskBench data not found at {MASKBENCH}")
    return maskbench.load(MASKBENCH)
