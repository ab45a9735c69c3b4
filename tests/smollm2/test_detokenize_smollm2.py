"""On SmolLM2's byte-level BPE, incremental text equals a full decode after every token."""

import random

from decodekit.detokenize import IncrementalText

TEXT = (
    "def mean(values):\n    return sum(values) / len(values)  # naïve\n"
    "Le café coûte 3 €. 漢字とかな。 Emoji: 🙂🚀 — done.\n"
)


def _check(model, ids):
    text = IncrementalText(model.decode)
    for k in range(1, len(ids) + 1):
        text.update(ids[:k])
        full = model.decode(ids[:k])
        assert text.text + text.tail == full, k
        if not full.endswith("\ufffd"):
            assert text.text == full, k


def test_real_text_decodes_alike(smollm2):
    model = smollm2.model
    _check(model, model.tokenizer.encode(TEXT, add_special_tokens=False))


def test_random_tokens_decode_alike(smollm2):
    """Random ids (special tokens and split multi-byte characters included)."""
    model = smollm2.model
    rng = random.Random(0)
    for _ in range(30):
        _check(model, [rng.randrange(model.vocab_size) for _ in range(40)])
