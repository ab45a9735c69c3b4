"""Incremental detokenization: the same text as a full decode, at a cost flat in length."""

from __future__ import annotations

import random

import pytest

from decodekit import Engine
from decodekit.contracts import Selection
from decodekit.detokenize import IncrementalText
from decodekit.execute import without_partial_stop
from decodekit.loop import StopChecker, start, stop_rows
from decodekit.testing import AttentionModel, MarkovModel


def _joined(ids: list[int]) -> str:
    return " ".join(str(t) for t in ids)


class CountingDecode:
    """A decode that counts the tokens it is asked to decode."""

    def __init__(self, decode):
        self.decode = decode
        self.tokens = 0

    def __call__(self, ids: list[int]) -> str:
        self.tokens += len(ids)
        return self.decode(ids)


def test_text_after_each_token_equals_a_full_decode():
    text = IncrementalText(_joined)
    ids: list[int] = []
    for t in [5, 12, 0, 7, 7, 31]:
        ids.append(t)
        text.update(ids)
        assert text.text == _joined(ids)
        assert text.tail == ""


def test_update_with_the_same_tokens_changes_nothing():
    text = IncrementalText(_joined)
    assert text.update([1, 2]) == "1 2"
    assert text.update([1, 2]) == ""
    assert (text.text, text.read_offset) == ("1 2", 2)


def test_fewer_tokens_than_already_decoded_is_an_error():
    text = IncrementalText(_joined)
    text.update([1, 2, 3])
    with pytest.raises(ValueError, match="2 tokens, fewer than the 3 already decoded"):
        text.update([1, 2])


def test_decoding_cost_is_linear_in_the_row_length():
    decode = CountingDecode(_joined)
    text = IncrementalText(decode)
    ids: list[int] = []
    for t in range(2000):
        ids.append(t % 50)
        text.update(ids)
    assert text.text == _joined(ids)
    # a full decode per step would decode 2,001,000 tokens; a window decodes a handful
    assert decode.tokens < 5 * len(ids)


def test_peek_reads_uncommitted_tokens_without_advancing():
    text = IncrementalText(_joined)
    text.update([1, 2])
    assert text.peek([1, 2, 3]) == text.peek([1, 2], [3]) == "1 2 3"
    assert (text.text, text.read_offset) == ("1 2", 2)


def test_copy_is_independent():
    text = IncrementalText(_joined)
    text.update([1])
    fork = text.copy()
    fork.update([1, 9])
    text.update([1, 4])
    assert (text.text, fork.text) == ("1 4", "1 9")


def _byte_decode(ids: list[int]) -> str:
    """A byte-level decoding: token ids are bytes, invalid UTF-8 becomes U+FFFD."""
    return bytes(ids).decode("utf-8", errors="replace")


def test_an_incomplete_character_is_held_back_until_it_completes():
    text = IncrementalText(_byte_decode)
    euro = list("a€".encode())  # 'a' then three bytes
    for k in range(1, len(euro)):
        text.update(euro[:k])
        assert text.text == "a"
    assert text.tail == "\ufffd"  # two of the euro sign's three bytes
    assert text.update(euro) == "€"
    assert (text.text, text.tail) == ("a€", "")


def test_byte_level_text_equals_a_full_decode_on_random_bytes():
    rng = random.Random(0)
    alphabet = [*"ab €漢🙂\n".encode(), 0xFF, 0x80]  # multi-byte and invalid bytes
    for _ in range(200):
        text = IncrementalText(_byte_decode)
        ids: list[int] = []
        for _ in range(rng.randint(1, 30)):
            ids.append(rng.choice(alphabet))
            text.update(ids)
            assert text.text + text.tail == _byte_decode(ids)
        if not _byte_decode(ids).endswith("\ufffd"):
            assert text.text == _byte_decode(ids)


class _Decoder:
    def __init__(self, decode):
        self.decode = decode


def test_stop_checker_finds_a_stop_string_spanning_steps_at_its_full_offset():
    checker = StopChecker(_Decoder(_joined), ["3 4"])
    text = IncrementalText(_joined)
    assert checker.find_new(text, [1, 2, 3]) is None
    assert checker.find_new(text, [1, 2, 3, 4]) == _joined([1, 2, 3, 4]).index("3 4")


def test_stop_checker_find_after_looks_ahead_without_changing_the_text():
    checker = StopChecker(_Decoder(_joined), ["2 9"])
    text = IncrementalText(_joined)
    checker.find_new(text, [1, 2])
    assert checker.find_after(text, [1, 2], [9]) == 2
    assert checker.find_after(text, [1, 2], [8]) is None
    assert text.read_offset == 2


def test_stop_checker_searches_only_new_text():
    """A row's old text is not searched again: its cost per step is flat in length."""
    decode = CountingDecode(_joined)
    checker = StopChecker(_Decoder(decode), ["never"])
    text = IncrementalText(decode)
    ids: list[int] = []
    for t in range(1000):
        ids.append(t % 10)
        assert checker.find_new(text, ids) is None
    assert decode.tokens < 5 * len(ids)


def test_stop_string_across_tokens_ends_a_generation_where_a_full_decode_would():
    engine = Engine(AttentionModel.random(vocab_size=8, seed=3))
    free = engine.generate([[0]], strategy="greedy", max_new_tokens=24)[0]
    # a stop string made of the text of tokens 5 to 7 of the free run (spans tokens)
    stop = _joined(free.token_ids[5:8])
    cut = engine.generate([[0]], strategy="greedy", max_new_tokens=24, stop=[stop])[0]
    assert cut.finish_reason == "stop"
    assert cut.text == _joined(free.token_ids)[: _joined(free.token_ids).index(stop)]


@pytest.mark.parametrize("prompts", [[[0]], [[0], [1, 2]]])
def test_streamed_text_equals_the_final_text_when_a_stop_string_fires(prompts):
    engine = Engine(AttentionModel.random(vocab_size=8, seed=3))
    free = engine.generate(prompts, strategy="greedy", max_new_tokens=24)[0]
    stop = _joined(free.token_ids[5:8])  # spans tokens: its start shows before it completes
    stream = engine.stream(prompts, strategy="greedy", max_new_tokens=24, stop=[stop])
    texts: dict[int, str] = {}
    for chunk in stream:
        texts[chunk.prompt_index] = texts.get(chunk.prompt_index, "") + chunk.text
    assert stream.result is not None
    assert stream.result.completions[0].finish_reason == "stop"
    assert [texts[i] for i in range(len(prompts))] == [
        c.text for c in stream.result.completions]


def test_a_partial_stop_string_is_held_back():
    assert without_partial_stop("a b 6 ", ["6 7", "x"]) == "a b "
    assert without_partial_stop("a b 6", ["6 7"]) == "a b "
    assert without_partial_stop("a b", ["6 7"]) == "a b"
    assert without_partial_stop("ab", ["bcd", "abx"]) == ""  # the longest suffix wins
    assert without_partial_stop("abc", []) == "abc"


def test_a_stop_string_before_eos_in_the_same_step_cuts_the_text():
    """A multi-token step (a draft) holding a stop string and then EOS: both count."""
    model = MarkovModel.random(6, seed=0, eos_token_id=5)
    state = start(model, [[0]], max_new_tokens=10, seeds=[0])
    state.stop_checker = StopChecker(model, ["1 2"])
    state.rows[0].token_ids.extend([3, 1, 2, 5])
    selection = Selection(tokens=[[3, 1, 2, 5]], kept_nodes=[[0, 1, 2]], accepted_draft=[3])
    stop_rows(state, [[3, 1, 2, 5]], selection, None)
    row = state.rows[0]
    assert row.finish_reason == "stop"
    assert row.stop_index == model.decode([3, 1, 2, 5]).index("1 2")
