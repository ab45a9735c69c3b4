"""The two matching engines, llguidance and xgrammar, behind one small matcher interface.

Neither engine is re-implemented here: a :class:`Matcher` wraps one engine matcher (one
row's state) and exposes what :class:`~decodekit_json.constraint.GrammarConstraint`
needs: consume, try-consume, roll back, fork, fill a 32-bit packed token mask, forced
tokens, and whether the output is complete. A :class:`Grammar` is a compiled grammar for
one tokenizer; :func:`compile_grammar` caches them per (grammar, tokenizer).
"""

from __future__ import annotations

import json
import re
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch

from decodekit.errors import ConstraintError

__all__ = [
    "Grammar",
    "LLGuidanceGrammar",
    "Matcher",
    "XGrammarGrammar",
    "clear_caches",
    "compile_grammar",
    "llguidance_tokenizer",
    "xgrammar_compiler",
]

_lock = threading.RLock()
#: id(hf tokenizer) -> (hf tokenizer kept alive, engine tokenizer)
_llg_tokenizers: dict[int, tuple[Any, Any]] = {}
_xgr_compilers: dict[int, tuple[Any, Any]] = {}
#: (backend, kind, canonical source, id(tokenizer)) -> Grammar, least recently used first
_grammars: OrderedDict[tuple[str, str, str, int], Grammar] = OrderedDict()
_GRAMMAR_CACHE_SIZE = 128


def clear_caches() -> None:
    """Forget every cached engine tokenizer and compiled grammar."""
    with _lock:
        _llg_tokenizers.clear()
        _xgr_compilers.clear()
        _grammars.clear()


class Matcher(ABC):
    """One row's matcher state."""

    #: Number of 32-bit words of the engine's mask (its vocabulary size / 32, rounded up).
    words: int

    @abstractmethod
    def consume(self, tokens: Sequence[int]) -> int:
        """Consume tokens while they are allowed; return how many were consumed.

        A token the grammar forbids is not consumed and leaves the state unchanged.
        """

    @abstractmethod
    def rollback(self, count: int) -> None:
        """Undo the last ``count`` consumed tokens."""

    @abstractmethod
    def fork(self) -> Matcher:
        """An independent copy of this state."""

    @abstractmethod
    def fill(self, out: torch.Tensor) -> None:
        """Write the allowed next tokens into ``out``: int32 ``[words]``, contiguous."""

    @abstractmethod
    def forced(self) -> list[int]:
        """Tokens that are the only possible continuation (may be empty)."""

    @abstractmethod
    def finished(self) -> bool:
        """Whether the output is complete: the grammar accepts and allows only EOS next."""

    @abstractmethod
    def accepting(self) -> bool:
        """Whether the output so far is a complete sentence (more may still be allowed)."""


class Grammar(ABC):
    """A grammar compiled for one tokenizer; makes matchers at the start of the output."""

    #: Engine name.
    backend: str
    #: EOS token ids the engine allows once the output is complete.
    eos_tokens: frozenset[int]
    #: Mask width in 32-bit words.
    words: int

    @abstractmethod
    def matcher(self) -> Matcher:
        """A fresh matcher at the start of the output."""


# ------------------------------------------------------------------ llguidance


def llguidance_tokenizer(tokenizer: Any) -> Any:
    """The ``llguidance.LLTokenizer`` of a Hugging Face fast tokenizer (cached, ~0.5 s once)."""
    import llguidance.hf

    with _lock:
        hit = _llg_tokenizers.get(id(tokenizer))
        if hit is not None and hit[0] is tokenizer:
            return hit[1]
        try:
            engine = llguidance.hf.from_tokenizer(tokenizer)
        except ValueError as exc:
            raise ConstraintError(f"llguidance cannot use this tokenizer: {exc}") from None
        _llg_tokenizers[id(tokenizer)] = (tokenizer, engine)
        return engine


class LLGuidanceMatcher(Matcher):
    """An ``llguidance.LLMatcher`` (one row)."""

    def __init__(self, matcher: Any, words: int, eos: frozenset[int]) -> None:
        self.m = matcher
        self.words = words
        self.eos = eos

    def consume(self, tokens: Sequence[int]) -> int:
        """See :meth:`Matcher.consume`."""
        if not tokens:
            return 0
        # validate first: consuming a forbidden token would put the matcher in error
        count = self.m.validate_tokens(list(tokens))
        if count and not self.m.consume_tokens(list(tokens[:count])):
            raise ConstraintError(f"llguidance rejected validated tokens: {self.m.get_error()}")
        return int(count)

    def rollback(self, count: int) -> None:
        """See :meth:`Matcher.rollback`."""
        if count and not self.m.rollback(count):
            raise ConstraintError(f"llguidance could not roll back: {self.m.get_error()}")

    def fork(self) -> LLGuidanceMatcher:
        """See :meth:`Matcher.fork`."""
        return LLGuidanceMatcher(self.m.deep_copy(), self.words, self.eos)

    def fill(self, out: torch.Tensor) -> None:
        """See :meth:`Matcher.fill`."""
        self.m.unsafe_compute_mask_ptr(out.data_ptr(), self.words * 4)

    def forced(self) -> list[int]:
        """See :meth:`Matcher.forced`."""
        if self.m.is_stopped():
            return []
        return [int(t) for t in self.m.compute_ff_tokens()]

    def finished(self) -> bool:
        """See :meth:`Matcher.finished`."""
        return bool(self.m.is_stopped()) and not self.m.is_error()

    def accepting(self) -> bool:
        """See :meth:`Matcher.accepting`."""
        return bool(self.m.is_accepting())


class LLGuidanceGrammar(Grammar):
    """A grammar compiled by llguidance (a template matcher that rows deep-copy)."""

    backend = "llguidance"

    def __init__(self, grammar: str, tokenizer: Any, what: str) -> None:
        import llguidance

        engine = llguidance_tokenizer(tokenizer)
        is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(
            grammar, engine
        )
        if is_error:
            raise ConstraintError(f"{what}: llguidance cannot compile it: {messages[0]}")
        template = llguidance.LLMatcher(engine, grammar, log_level=0)
        if template.is_error():
            raise ConstraintError(f"{what}: llguidance cannot compile it: {template.get_error()}")
        self.eos_tokens = frozenset(int(t) for t in engine.eos_tokens)
        self.words = (int(engine.vocab_size) + 31) // 32
        self.template = LLGuidanceMatcher(template, self.words, self.eos_tokens)

    def matcher(self) -> LLGuidanceMatcher:
        """See :meth:`Grammar.matcher`."""
        return self.template.fork()


# ------------------------------------------------------------------ xgrammar


def xgrammar_compiler(tokenizer: Any) -> tuple[Any, Any]:
    """``(xgrammar.GrammarCompiler, TokenizerInfo)`` for a Hugging Face tokenizer (cached)."""
    try:
        import xgrammar
    except ImportError:
        raise ConstraintError(
            "backend: 'xgrammar' could not be imported; decodekit-json depends on it, so "
            "the installation is incomplete (pip install --force-reinstall xgrammar)"
        ) from None
    with _lock:
        hit = _xgr_compilers.get(id(tokenizer))
        if hit is not None and hit[0] is tokenizer:
            return hit[1]
        info = xgrammar.TokenizerInfo.from_huggingface(tokenizer)
        compiler = xgrammar.GrammarCompiler(info, max_threads=2)
        _xgr_compilers[id(tokenizer)] = (tokenizer, (compiler, info))
        return compiler, info


class XGrammarMatcher(Matcher):
    """An ``xgrammar.GrammarMatcher`` (one row)."""

    def __init__(self, matcher: Any, grammar: XGrammarGrammar) -> None:
        self.m = matcher
        self.grammar = grammar
        self.words = grammar.words
        self._scratch = torch.empty((1, self.words), dtype=torch.int32)

    def consume(self, tokens: Sequence[int]) -> int:
        """See :meth:`Matcher.consume`."""
        count = 0
        for token in tokens:
            if self.m.is_terminated() or not self.m.accept_token(int(token)):
                break
            count += 1
        return count

    def rollback(self, count: int) -> None:
        """See :meth:`Matcher.rollback`."""
        if count:
            self.m.rollback(count)

    def fork(self) -> XGrammarMatcher:
        """See :meth:`Matcher.fork`."""
        return XGrammarMatcher(self.m.fork(), self.grammar)

    def fill(self, out: torch.Tensor) -> None:
        """See :meth:`Matcher.fill`."""
        if self.m.is_terminated():
            out.zero_()
            return
        self.m.fill_next_token_bitmask(self._scratch, 0)
        out.copy_(self._scratch[0])

    def forced(self) -> list[int]:
        """See :meth:`Matcher.forced`.

        xgrammar finds the forced *string*; it is tokenized, its last token dropped (the
        model may merge it with what follows), and the rest kept only if the grammar
        accepts them.
        """
        if self.m.is_terminated():
            return []
        text = self.m.find_jump_forward_string()
        if not text:
            return []
        tokens = self.grammar.tokenizer.encode(text, add_special_tokens=False)[:-1]
        if not tokens:
            return []
        probe = self.m.fork()
        kept = []
        for token in tokens:
            if not probe.accept_token(int(token)):
                break
            kept.append(int(token))
        return kept

    def finished(self) -> bool:
        """See :meth:`Matcher.finished`."""
        if self.m.is_terminated():
            return True
        if not self.m.is_completed():
            return False
        self.m.fill_next_token_bitmask(self._scratch, 0)
        allowed = _bits(self._scratch[0])
        return allowed <= self.grammar.eos_tokens

    def accepting(self) -> bool:
        """See :meth:`Matcher.accepting`."""
        return bool(self.m.is_completed() or self.m.is_terminated())


def _bits(words: torch.Tensor) -> set[int]:
    """Token ids whose bit is set in a packed int32 mask ``[W]``."""
    shifts = torch.arange(32, dtype=torch.int32)
    bits = ((words.unsqueeze(-1) >> shifts) & 1).flatten()
    return {int(i) for i in bits.nonzero().flatten()}


class XGrammarGrammar(Grammar):
    """A grammar compiled by xgrammar (``CompiledGrammar``)."""

    backend = "xgrammar"

    def __init__(self, kind: str, source: str, tokenizer: Any, what: str,
                 options: dict[str, Any]) -> None:

        compiler, info = xgrammar_compiler(tokenizer)
        try:
            if kind == "json_schema":
                compact = options.get("whitespace") == "compact"
                compiled = compiler.compile_json_schema(
                    source,
                    any_whitespace=not compact,
                    separators=(", ", ": ") if compact else None,
                    strict_mode=False,
                )
            elif kind == "regex":
                compiled = compiler.compile_regex(source)
            else:
                compiled = compiler.compile_grammar(source)
        except (RuntimeError, ValueError, TypeError) as exc:
            lines = str(exc).strip().splitlines()
            # drop xgrammar's "[time] file.cc:line: " prefix, keep the reason
            reason = re.sub(r"^\[[^\]]*\]\s*\S+:\d+:\s*", "", lines[0]) if lines else str(exc)
            raise ConstraintError(f"{what}: xgrammar cannot compile it: {reason}") from None
        self.compiled = compiled
        self.tokenizer = tokenizer
        self.eos_tokens = frozenset(int(t) for t in info.stop_token_ids)
        self.words = (int(info.vocab_size) + 31) // 32

    def matcher(self) -> XGrammarMatcher:
        """See :meth:`Grammar.matcher`."""
        import xgrammar

        return XGrammarMatcher(xgrammar.GrammarMatcher(self.compiled), self)


# ------------------------------------------------------------------ compile + cache


def compile_grammar(
    backend: str,
    kind: str,
    source: str,
    tokenizer: Any,
    *,
    what: str,
    options: dict[str, Any] | None = None,
) -> Grammar:
    """Compile (or fetch from the cache) a grammar for ``tokenizer``.

    Parameters
    ----------
    backend : {"llguidance", "xgrammar"}
    kind : str
        For llguidance, ``"llguidance"`` (``source`` is an llguidance grammar, the output
        of ``LLMatcher.grammar_from_*``). For xgrammar, ``"json_schema"``, ``"regex"`` or
        ``"ebnf"`` (``source`` is the schema JSON, the pattern, or the EBNF text).
    source : str
        The grammar text.
    tokenizer : Hugging Face fast tokenizer
    what : str
        How errors name the constraint (e.g. ``"json_schema constraint"``).
    options : dict or None
        Backend options that change the compiled grammar (xgrammar's whitespace mode).

    Raises
    ------
    ConstraintError
        The engine cannot compile the grammar; the message carries the engine's reason.
    """
    options = options or {}
    key = (backend, kind, source + "\x00" + json.dumps(options, sort_keys=True), id(tokenizer))
    with _lock:
        hit = _grammars.get(key)
        if hit is not None and getattr(hit, "_tokenizer_ref", None) is tokenizer:
            _grammars.move_to_end(key)
            return hit
    grammar: Grammar
    if backend == "llguidance":
        grammar = LLGuidanceGrammar(source, tokenizer, what)
    elif backend == "xgrammar":
        grammar = XGrammarGrammar(kind, source, tokenizer, what, options)
    else:  # pragma: no cover - the spec models restrict the name
        raise ConstraintError(f"backend: unknown backend {backend!r}")
    grammar._tokenizer_ref = tokenizer  # type: ignore[attr-defined]
    with _lock:
        _grammars[key] = grammar
        while len(_grammars) > _GRAMMAR_CACHE_SIZE:
            _grammars.popitem(last=False)
    return grammar
