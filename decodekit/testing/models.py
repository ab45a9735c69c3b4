"""Toy models the decode loop drives like real ones, with exactly computable logits.

- :class:`AttentionModel` is the default target of the lossless and greedy-equivalence
  checks: one attention layer in float64 whose logits depend on every token a slot
  attends to and on its position, with keys and values held per cache slot. A wrong tree
  mask, wrong positions or a wrong cache commit change its logits, and
  :meth:`AttentionModel.exact_logits` recomputes any sequence from scratch (no cache,
  plain causal attention) as the ground truth.
- :class:`MarkovModel` is a first-order Markov chain: its logits depend on the last
  token only, so it cannot see attention bugs. It is the cheap model for tests about
  everything else (parameters, errors, drafter plumbing) and the toy drafters' chain.
- :func:`tiny_llama` builds a tiny random Hugging Face Llama, for tests of the model path.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from decodekit.model import ForwardResult, KVCache, LanguageModel, SlotCache
from decodekit.tree import StepBatch, step_attention_mask

__all__ = ["AttentionCache", "AttentionModel", "MarkovModel", "tiny_llama"]


class _NullCache(SlotCache):
    """Bookkeeping-only cache: a Markov model needs no keys or values."""


class MarkovModel(LanguageModel):
    """A first-order Markov chain over ``V`` tokens, driven like a causal LM.

    The distribution after a token depends only on that token: the logits after token
    ``t`` are ``log_probs[t]``. Hidden states, on request, are the one-hot rows of the
    token (so similarity-based strategies can run on it too). It ignores positions, the
    attention mask and the cache, so it cannot catch bugs in them: lossless and
    greedy-equivalence checks run on :class:`AttentionModel`.

    Parameters
    ----------
    log_probs : FloatTensor ``[V, V]``
        Row ``t`` holds the log transition probabilities after token ``t``.
    eos_token_id : int or None
        A token that ends rows, or None for none.
    context_length : int
        Reported context length.
    """

    def __init__(
        self, log_probs: torch.Tensor, eos_token_id: int | None = None, context_length: int = 4096
    ) -> None:
        if log_probs.ndim != 2 or log_probs.shape[0] != log_probs.shape[1]:
            raise ValueError(f"log_probs must be [V, V], got {tuple(log_probs.shape)}")
        self.log_probs = torch.log_softmax(log_probs.double(), dim=-1).float()
        self.vocab_size = int(log_probs.shape[0])
        self.context_length = context_length
        self.eos_token_ids = frozenset() if eos_token_id is None else frozenset({eos_token_id})
        self.device = torch.device("cpu")
        self.forward_calls = 0

    @classmethod
    def random(
        cls, vocab_size: int, seed: int = 0, *, spread: float = 1.5, **kwargs: Any
    ) -> MarkovModel:
        """A random chain: logits drawn from N(0, ``spread``²), reproducible by ``seed``."""
        generator = torch.Generator().manual_seed(seed)
        logits = torch.randn((vocab_size, vocab_size), generator=generator) * spread
        return cls(logits, **kwargs)

    def probs(self, token: int) -> torch.Tensor:
        """Transition probabilities after ``token``: float64 ``[V]``."""
        return self.log_probs[token].double().exp()

    def exact_logits(self, sequence: Sequence[int]) -> list[float]:
        """The logits after ``sequence`` (its last token's row of the table), float64 values."""
        return self.log_probs[sequence[-1]].double().tolist()

    def new_cache(self, rows: int) -> KVCache:  # noqa: D102
        return _NullCache(rows, self.device)

    def forward(  # noqa: D102
        self, step: StepBatch, cache: KVCache, *, hidden_states: bool = False
    ) -> ForwardResult:
        assert isinstance(cache, SlotCache)
        self.forward_calls += 1
        cache.appended(step.slot_valid)
        scored = step.tokens[:, step.width - step.logits_count :]  # root and every node
        logits = self.log_probs[scored]
        hidden = None
        if hidden_states:  # every slot of the step, as for a real model
            hidden = torch.nn.functional.one_hot(step.tokens, self.vocab_size).float()
        return ForwardResult(logits=logits, hidden_states=hidden)

    def encode(self, prompt: str, *, raw: bool = False) -> list[int]:
        """Prompts are space-separated token ids (``"0 3 1"``)."""
        return [int(t) for t in prompt.split()]

    def decode(self, token_ids: list[int]) -> str:
        """Token ids joined by spaces."""
        return " ".join(str(t) for t in token_ids)


class AttentionCache(SlotCache):
    """The :class:`~decodekit.model.SlotCache` of :class:`AttentionModel`: keys and values per slot.

    Attributes
    ----------
    keys, values : DoubleTensor ``[rows, S, D]``
        Every slot's key and value, holes included (the validity mask of
        :class:`~decodekit.model.SlotCache` says which slots attention may read). Between a
        forward and its :meth:`commit` they also hold the step's ``P + N`` slots.
    """

    def __init__(self, rows: int, device: torch.device, dim: int) -> None:
        super().__init__(rows, device)
        self.keys = torch.zeros((rows, 0, dim), dtype=torch.float64, device=device)
        self.values = torch.zeros_like(self.keys)

    def append(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Append a step's keys and values ``[rows, P + N, D]`` (before :meth:`commit`)."""
        self.keys = torch.cat([self.keys, keys], dim=1)
        self.values = torch.cat([self.values, values], dim=1)

    def _gather(self, order: torch.Tensor) -> None:
        index = order.unsqueeze(2).expand(-1, -1, self.keys.shape[2])
        self.keys = self.keys.gather(1, index)
        self.values = self.values.gather(1, index)

    def _trim(self, length: int) -> None:
        self.keys = self.keys[:, :length]
        self.values = self.values[:, :length]

    def _select(self, rows: torch.Tensor) -> None:
        self.keys = self.keys.index_select(0, rows)
        self.values = self.values.index_select(0, rows)


class AttentionModel(LanguageModel):
    """One fixed-weight attention layer over ``V`` tokens in float64, exactly computable.

    A slot holding token ``t`` at position ``i`` has the input ``x = E[t] + pos(i)`` with
    ``pos(i)[d] = sin(i * frequencies[d] + phases[d])``; it attends, with one head, to the
    slots the step's attention mask allows (:func:`~decodekit.tree.step_attention_mask`:
    valid cache slots, its pending predecessors, its draft ancestors and itself), reading
    their keys and values from :class:`AttentionCache`. Its hidden state is
    ``h = x + mix * attention(x)`` and its logits are ``bound * tanh((h @ unembed) / bound)``:
    every logit lies in ``(-bound, +bound)``, so no probability exceeds
    ``max_prob`` (see :meth:`random`) and no row is near one-hot.

    The logits therefore depend on the token's position and on every token it attends
    to: a draft node that sees a sibling, a position off by one, or a rejected node left
    valid in the cache changes them, and the lossless checks of :mod:`decodekit.testing`
    (which compare against :meth:`exact_logits`, a from-scratch recomputation) see it.

    Parameters
    ----------
    embeddings : FloatTensor ``[V, D]``
    frequencies, phases : FloatTensor ``[D]``
        The sinusoidal position code.
    query, key, value : FloatTensor ``[D, D]``
        Projections.
    unembed : FloatTensor ``[D, V]``
    bound : float
        Logits lie in ``(-bound, bound)``.
    mix : float
        Weight of the attention output in the hidden state.
    eos_token_id : int or None
        A token that ends rows, or None for none.
    context_length : int
        Reported context length (positions are not limited by a table).

    Attributes
    ----------
    forward_calls : int
        Forwards run through the decode loop (not :meth:`exact_logits`).
    """

    def __init__(
        self,
        embeddings: torch.Tensor,
        frequencies: torch.Tensor,
        phases: torch.Tensor,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        unembed: torch.Tensor,
        *,
        bound: float,
        mix: float = 1.0,
        eos_token_id: int | None = None,
        context_length: int = 4096,
    ) -> None:
        vocab, dim = embeddings.shape
        shapes = {"frequencies": (dim,), "phases": (dim,), "query": (dim, dim),
                  "key": (dim, dim), "value": (dim, dim), "unembed": (dim, vocab)}
        given = {"frequencies": frequencies, "phases": phases, "query": query, "key": key,
                 "value": value, "unembed": unembed}
        for name, shape in shapes.items():
            if tuple(given[name].shape) != shape:
                raise ValueError(f"{name} must be {list(shape)}, got {list(given[name].shape)}")
        if bound <= 0:
            raise ValueError(f"bound must be > 0, got {bound}")
        self.embeddings = embeddings.double()
        self.frequencies = frequencies.double()
        self.phases = phases.double()
        self.query = query.double()
        self.key = key.double()
        self.value = value.double()
        self.unembed = unembed.double()
        self._qkv = torch.cat([self.query, self.key, self.value], dim=1)  # [D, 3D]
        self._positions = torch.zeros((0, dim), dtype=torch.float64)  # pos(i), grown on demand
        self.bound = float(bound)
        self.mix = float(mix)
        self.dim = int(dim)
        self.vocab_size = int(vocab)
        self.context_length = context_length
        self.eos_token_ids = frozenset() if eos_token_id is None else frozenset({eos_token_id})
        self.device = torch.device("cpu")
        self.forward_calls = 0

    @classmethod
    def random(
        cls,
        vocab_size: int,
        seed: int = 0,
        *,
        dim: int = 8,
        max_prob: float = 0.9,
        mix: float = 3.0,
        eos_token_id: int | None = None,
        context_length: int = 4096,
    ) -> AttentionModel:
        """Random weights, reproducible by ``seed``.

        Parameters
        ----------
        vocab_size : int
            ``V`` (``>= 2``).
        seed : int
        dim : int
            ``D``, the width of embeddings, keys and values.
        max_prob : float
            The logit bound is set so that no next-token probability can exceed it
            (``bound = log(max_prob * (V - 1) / (1 - max_prob)) / 2``).
        mix : float
            Weight of the attention output in the hidden state (context sensitivity).
        eos_token_id : int or None
        context_length : int
        """
        if vocab_size < 2:
            raise ValueError(f"vocab_size must be >= 2, got {vocab_size}")
        if not 1.0 / vocab_size < max_prob < 1.0:
            raise ValueError(f"max_prob must lie in (1/V, 1), got {max_prob}")
        g = torch.Generator().manual_seed(seed)
        scale = 1.0 / math.sqrt(dim)
        bound = 0.5 * math.log(max_prob * (vocab_size - 1) / (1.0 - max_prob))

        def normal(*shape: int) -> torch.Tensor:
            return torch.randn(shape, generator=g, dtype=torch.float64)

        def uniform(low: float, high: float, size: int) -> torch.Tensor:
            return low + (high - low) * torch.rand(size, generator=g, dtype=torch.float64)

        return cls(
            embeddings=normal(vocab_size, dim),
            frequencies=uniform(0.3, 2.0, dim),
            phases=uniform(0.0, 2.0 * math.pi, dim),
            query=normal(dim, dim) * scale * 0.5,  # soft attention: every key counts
            key=normal(dim, dim) * scale,
            value=normal(dim, dim) * scale,
            unembed=normal(dim, vocab_size) * scale * 0.5 * bound,  # mostly below the bound
            bound=bound,
            mix=mix,
            eos_token_id=eos_token_id,
            context_length=context_length,
        )

    # ------------------------------------------------------------------ the layer

    def position_code(self, positions: torch.Tensor) -> torch.Tensor:
        """``pos(i)``: DoubleTensor ``[..., D]`` for positions ``[...]`` (a cached table)."""
        needed = int(positions.max()) + 1 if positions.numel() else 0
        if needed > self._positions.shape[0]:
            size = max(needed, 2 * self._positions.shape[0], 64)
            angles = torch.arange(size, dtype=torch.float64).unsqueeze(1) * self.frequencies
            self._positions = torch.sin(angles + self.phases)
        return self._positions[positions]

    def inputs(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Layer inputs ``E[t] + pos(i)``: DoubleTensor ``[..., D]``.

        Parameters
        ----------
        tokens, positions : LongTensor ``[...]``
        """
        return self.embeddings[tokens] + self.position_code(positions)

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries, keys and values ``[..., D]`` of inputs ``x [..., D]``."""
        fused = (x.reshape(-1, self.dim) @ self._qkv).view(*x.shape[:-1], 3 * self.dim)
        query, key, value = fused.split(self.dim, dim=-1)
        return query, key, value

    def attend(
        self, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, allowed: torch.Tensor
    ) -> torch.Tensor:
        """Masked single-head attention.

        Parameters
        ----------
        queries : DoubleTensor ``[rows, Q, D]``
        keys, values : DoubleTensor ``[rows, K, D]``
        allowed : BoolTensor ``[rows, Q, K]``
            Where a query may attend; every query must be allowed at least one key.

        Returns
        -------
        DoubleTensor ``[rows, Q, D]``
        """
        scores = queries @ keys.transpose(1, 2) / math.sqrt(self.dim)
        scores = scores.masked_fill(~allowed, float("-inf"))
        return torch.softmax(scores, dim=-1) @ values

    def head(self, x: torch.Tensor, attended: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden states ``[..., D]`` and logits ``[..., V]`` (float64).

        Parameters
        ----------
        x, attended : DoubleTensor ``[..., D]``
            Layer inputs and their attention outputs.
        """
        hidden = x + self.mix * attended
        logits = self.bound * torch.tanh((hidden @ self.unembed) / self.bound)
        return hidden, logits

    # ------------------------------------------------------------------ LanguageModel

    def new_cache(self, rows: int) -> AttentionCache:  # noqa: D102
        return AttentionCache(rows, self.device, self.dim)

    def forward(  # noqa: D102
        self, step: StepBatch, cache: KVCache, *, hidden_states: bool = False
    ) -> ForwardResult:
        if not isinstance(cache, AttentionCache):
            raise TypeError(
                "AttentionModel.forward needs the cache from AttentionModel.new_cache()"
            )
        self.forward_calls += 1
        x = self.inputs(step.tokens, step.positions)
        queries, keys, values = self.project(x)
        cache.append(keys, values)
        cache.appended(step.slot_valid)
        # queries only where outputs are needed: the scored slots (every slot for hidden states)
        start = 0 if hidden_states else step.width - step.logits_count
        allowed = step_attention_mask(cache.valid, step)[:, 0, start:]  # [rows, Q, S+P+N]
        attended = self.attend(queries[:, start:], cache.keys, cache.values, allowed)
        hidden, logits = self.head(x[:, start:], attended)
        logits = logits[:, logits.shape[1] - step.logits_count :]  # root and every node
        return ForwardResult(
            logits=logits.float(), hidden_states=hidden.float() if hidden_states else None
        )

    def exact_logits(self, sequence: Sequence[int]) -> list[float]:
        """The logits after ``sequence``, recomputed from scratch: the ground truth.

        One plain causal pass over the whole sequence at positions ``0 .. T-1``, with no
        cache, tree or padding; rounded to float32 like the logits :meth:`forward` returns,
        then given as float64 values.
        """
        return self.exact_logits_many([sequence])[0]

    def exact_logits_many(self, sequences: Sequence[Sequence[int]]) -> list[list[float]]:
        """:meth:`exact_logits` of many sequences, equal lengths computed as one batch."""
        out: list[list[float]] = [[] for _ in sequences]
        by_length: dict[int, list[int]] = {}
        for i, sequence in enumerate(sequences):
            if not sequence:
                raise ValueError("exact_logits needs at least one token")
            by_length.setdefault(len(sequence), []).append(i)
        for length, members in by_length.items():
            tokens = torch.tensor([list(sequences[i]) for i in members], dtype=torch.long)
            x = self.inputs(tokens, torch.arange(length).expand(len(members), length))
            queries, keys, values = self.project(x)
            allowed = torch.ones((len(members), 1, length), dtype=torch.bool)
            # the last slot attends to every slot: its logits are the next token's
            attended = self.attend(queries[:, -1:], keys, values, allowed)
            _, logits = self.head(x[:, -1:], attended)
            for i, row in zip(members, logits[:, 0].float().double().tolist(), strict=True):
                out[i] = row
        return out

    def encode(self, prompt: str, *, raw: bool = False) -> list[int]:
        """Prompts are space-separated token ids (``"0 3 1"``)."""
        return [int(t) for t in prompt.split()]

    def decode(self, token_ids: list[int]) -> str:
        """Token ids joined by spaces."""
        return " ".join(str(t) for t in token_ids)


def tiny_llama(
    vocab_size: int = 97,
    *,
    seed: int = 0,
    layers: int = 2,
    context_length: int = 256,
    attn_implementation: str = "sdpa",
) -> LanguageModel:
    """A tiny random Llama (no tokenizer), built in memory: for tests of the model path.

    It exercises the real attention, KV cache and tree masks of :class:`~decodekit.HFModel`
    in milliseconds; feed it token-id prompts. ``attn_implementation`` is one of
    :data:`decodekit.model.ATTENTION_IMPLEMENTATIONS`.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    from decodekit.model import HFModel

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=context_length,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        attn_implementation=attn_implementation,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).float()
    with torch.no_grad():  # spread the logits so argmax ties never happen
        model.lm_head.weight.mul_(8.0)
    return HFModel(model, None, name="tiny-llama")
