"""Toy models the decode loop drives like real ones.

- :class:`MarkovModel` is a first-order Markov chain over a small vocabulary, so the exact
  probability of every output sequence is a product of transition probabilities.
- :func:`tiny_llama` builds a tiny random Hugging Face Llama, for tests of the model path.
"""

from __future__ import annotations

from typing import Any

import torch

from decodekit.model import ForwardResult, KVCache, LanguageModel, SlotCache
from decodekit.tree import StepBatch

__all__ = ["MarkovModel", "tiny_llama"]


class _NullCache(SlotCache):
    """Bookkeeping-only cache: a Markov model needs no keys or values."""


class MarkovModel(LanguageModel):
    """A first-order Markov chain over ``V`` tokens, driven like a causal LM.

    The distribution after a token depends only on that token: the logits after token
    ``t`` are ``log_probs[t]``. Hidden states, on request, are the one-hot rows of the
    token (so similarity-based strategies can run on it too).

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
