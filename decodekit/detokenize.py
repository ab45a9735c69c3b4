"""Incremental detokenization: the text of a growing row, decoding only its tail.

Decoding a whole row every step costs time proportional to its length: at 2,048 tokens
a SmolLM2 decode takes about 0.5 ms, once per row for stop strings, again for
streaming, and once per candidate for beam search's stopping test. An
:class:`IncrementalText` decodes a short window instead (the method of vLLM's and
text-generation-inference's detokenizers): two offsets into the row's tokens, ``prefix``
and ``read``, where the text of ``ids[:read]`` is known and stable. Each update decodes
``ids[prefix:]`` and ``ids[prefix:read]`` and keeps the difference; the tokens before
``read`` give the context a tokenizer needs to decode the next ones as it would in the
whole row (a SentencePiece word-start space, a byte-level character split across
tokens). A tail that ends in an incomplete UTF-8 character (decoded as U+FFFD, the
replacement character) is held back until the character completes.

For tokenizers whose decoding of a sequence is the decoding of its parts joined (byte
level BPE, SentencePiece, the toy models) the text equals a full decode; the loop still
confirms every stop string it finds with one full decode of the row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

__all__ = ["IncrementalText"]

#: An incomplete UTF-8 character decodes to the replacement character.
REPLACEMENT = "\ufffd"


class IncrementalText:
    """The text of a token sequence that only grows, decoded a window at a time.

    Parameters
    ----------
    decode : callable ``(list of int) -> str``
        The model's decoding (:meth:`LanguageModel.decode`).

    Attributes
    ----------
    text : str
        The stable text: the decoding of the tokens up to the read offset, without a
        trailing incomplete character.
    tail : str
        Text after :attr:`text` from the tokens given last, possibly ending in an
        incomplete character (U+FFFD, the replacement character); empty once it is stable.
    """

    __slots__ = ("_decode", "_prefix", "_read", "tail", "text")

    def __init__(self, decode: Callable[[list[int]], str]) -> None:
        self._decode = decode
        self._prefix = 0  # tokens before it are context no window needs again
        self._read = 0  # text covers exactly the tokens before it
        self.text = ""
        self.tail = ""

    def update(self, ids: Sequence[int]) -> str:
        """Advance to ``ids`` (the tokens seen so far, extended); return the new stable text.

        Calling it again with the same tokens returns ``""`` and changes nothing.
        """
        if len(ids) < self._read:
            raise ValueError(
                f"the row has {len(ids)} tokens, fewer than the {self._read} already decoded"
            )
        if len(ids) == self._read:
            return ""
        tail = self._tail(ids[self._prefix :], offset=self._prefix)
        if not tail or tail.endswith(REPLACEMENT):
            self.tail = tail  # wait for the character to complete
            return ""
        self.text += tail
        self.tail = ""
        self._prefix, self._read = self._read, len(ids)
        return tail

    def peek(self, ids: Sequence[int], extra: Sequence[int] = ()) -> str:
        """The text of ``ids`` then ``extra`` (extending the tokens seen); changes nothing."""
        return self.text + self.tail_of(ids, extra)

    def tail_of(self, ids: Sequence[int], extra: Sequence[int] = ()) -> str:
        """The text that ``ids`` then ``extra`` (extending the tokens seen) add to :attr:`text`.

        ``extra`` spares the caller a copy of the whole row to look one token ahead.
        """
        if len(ids) + len(extra) <= self._read:
            return ""
        return self._tail([*ids[self._prefix :], *extra], offset=self._prefix)

    @property
    def read_offset(self) -> int:
        """How many tokens :attr:`text` covers."""
        return self._read

    def copy(self) -> IncrementalText:
        """An independent copy (for a forked row)."""
        clone = IncrementalText(self._decode)
        clone._prefix, clone._read = self._prefix, self._read
        clone.text, clone.tail = self.text, self.tail
        return clone

    def _tail(self, window: Sequence[int], *, offset: int) -> str:
        """Text of the tokens after the read offset; ``window`` holds the tokens from ``offset``.

        The tokens between the prefix and read offsets are decoded again as context.
        """
        window = list(window)
        known = self._decode(window[: self._read - offset]) if self._read > offset else ""
        full = self._decode(window)
        # shorter (or no longer): the new tokens decode to nothing yet (a partial byte)
        return full[len(known) :] if len(full) > len(known) else ""
