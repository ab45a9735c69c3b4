"""Model adapters: what the decode loop needs from a causal language model.

:class:`LanguageModel` is the contract (a forward over one :class:`~decodekit.tree.StepBatch`
and a KV cache with the operations strategies need); :class:`HFModel` implements it over
any Hugging Face causal LM (transformers 5.x), and :mod:`decodekit.testing` implements it
for toy models whose distribution is known exactly.

The KV cache is a rectangle ``[rows, S]`` of slots with a validity mask: padding and
rejected draft nodes are holes that attention skips, so rows can accept different
numbers of draft tokens in the same batch. Trailing holes are trimmed after each step
and the cache is compacted when holes take up much of it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import torch

from decodekit.contracts import ForwardResult, KVCache, LanguageModel, StepBatch
from decodekit.errors import ModelLoadError, PromptError
from decodekit.tree import step_attention_mask

__all__ = [
    "ATTENTION_IMPLEMENTATIONS",
    "DTYPES",
    "ForwardResult",
    "HFModel",
    "KVCache",
    "LanguageModel",
    "SlotCache",
    "load_model",
]

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16}
DTypeName = Literal["float32", "bfloat16"]
#: transformers attention implementations that take the step's custom 4D mask: sdpa reads
#: it as a boolean "may attend" mask, eager adds it to the scores (so it gets a float mask).
#: Others (flash attention, flex attention, paged kernels) ignore or reject a 4D mask,
#: which would silently unmask padding, cache holes and tree nodes.
ATTENTION_IMPLEMENTATIONS: tuple[str, ...] = ("sdpa", "eager")


class SlotCache(KVCache):
    """A KV cache as a rectangle of slots with a validity mask.

    Subclasses hold the per-layer tensors and implement :meth:`_gather` and :meth:`_trim`;
    this class keeps the bookkeeping: which slots are valid and each row's next position.

    Attributes
    ----------
    valid : BoolTensor ``[rows, S]``
        Which slots hold committed tokens.
    """

    #: Compact when holes exceed this fraction of the slots (and the cache is not tiny).
    compact_threshold = 0.5

    def __init__(self, rows: int, device: torch.device) -> None:
        self.valid = torch.zeros((rows, 0), dtype=torch.bool, device=device)
        self._next = torch.zeros(rows, dtype=torch.long)
        self._pending_slots: torch.Tensor | None = None

    @property
    def next_positions(self) -> torch.Tensor:  # noqa: D102
        return self._next

    @property
    def length(self) -> int:
        """``S``, the number of slots."""
        return int(self.valid.shape[1])

    @property
    def all_valid(self) -> bool:
        """Whether no slot is a hole."""
        return bool(self.valid.all())

    def appended(self, slot_valid: torch.Tensor) -> None:
        """Record that a forward appended a step's slots (before :meth:`commit`)."""
        self._pending_slots = slot_valid

    def commit(self, keep: torch.Tensor) -> None:  # noqa: D102
        if self._pending_slots is None:
            raise RuntimeError("commit() without a forward step to commit")
        keep = keep.to(self.valid.device) & self._pending_slots
        self._pending_slots = None
        self.valid = torch.cat([self.valid, keep], dim=1)
        self._next = self._next + keep.sum(dim=1).cpu()
        self._tidy()

    def rollback(self, counts: torch.Tensor) -> None:  # noqa: D102
        counts = counts.to(self.valid.device).long()
        from_right = self.valid.flip(1).long().cumsum(1).flip(1)
        drop = self.valid & (from_right <= counts.unsqueeze(1))
        self.valid = self.valid & ~drop
        self._next = self._next - drop.sum(dim=1).cpu()
        self._tidy()

    def select_rows(self, rows: torch.Tensor) -> None:  # noqa: D102
        index = rows.to(self.valid.device).long()
        self.valid = self.valid.index_select(0, index)
        self._next = self._next.index_select(0, rows.cpu().long())
        self._select(index)

    def _tidy(self) -> None:
        """Trim trailing holes; compact when holes dominate."""
        if self.length == 0:
            return
        used = self.valid.any(dim=0).nonzero()
        keep_len = int(used.max()) + 1 if used.numel() else 0
        if keep_len < self.length:
            self.valid = self.valid[:, :keep_len]
            self._trim(keep_len)
        holes = self.length - int(self.valid.sum(dim=1).max()) if self.length else 0
        if self.length >= 64 and holes > self.compact_threshold * self.length:
            order = torch.sort((~self.valid).to(torch.uint8), dim=1, stable=True).indices
            new_len = int(self.valid.sum(dim=1).max())
            order = order[:, :new_len]
            self.valid = self.valid.gather(1, order)
            self._gather(order)

    def _gather(self, order: torch.Tensor) -> None:
        """Reorder slots per row: new slot ``j`` of row ``r`` is old slot ``order[r, j]``."""

    def _trim(self, length: int) -> None:
        """Drop slots from ``length`` on."""

    def _select(self, rows: torch.Tensor) -> None:
        """Select rows of the per-layer tensors."""


class HFCache(SlotCache):
    """:class:`SlotCache` over a transformers cache.

    Models whose layers all attend to the whole sequence get one
    :class:`~decodekit.slot_buffer.SlotLayer` per layer: a buffer written in place, so a
    step copies only its own keys and values (transformers' ``DynamicCache`` copies every
    layer each step) and trimming trailing holes copies nothing. Other models keep a
    ``DynamicCache``.
    """

    def __init__(self, rows: int, device: torch.device, config: Any) -> None:
        from transformers import Cache, DynamicCache

        from decodekit import slot_buffer  # imports transformers: loaded with the first cache

        super().__init__(rows, device)
        self._slots = slot_buffer
        if slot_buffer.supports_slot_layers(config):
            count = config.get_text_config().num_hidden_layers
            self.hf = Cache(layers=[slot_buffer.SlotLayer() for _ in range(count)])
        else:
            self.hf = DynamicCache(config=config)

    def _layers(self) -> list[Any]:
        return [layer for layer in self.hf.layers if getattr(layer, "is_initialized", False)]

    def _gather(self, order: torch.Tensor) -> None:
        for layer in self._layers():
            self._slots.gather_slots(layer, order)

    def _trim(self, length: int) -> None:
        for layer in self._layers():
            self._slots.trim_slots(layer, length)

    def _select(self, rows: torch.Tensor) -> None:
        for layer in self._layers():
            self._slots.select_rows(layer, rows)


class HFModel(LanguageModel):
    """A Hugging Face causal LM and its tokenizer, driven one step at a time.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        A causal LM whose attention accepts a 4D mask (Llama, Qwen, Mistral, SmolLM, ...)
        with one of :data:`ATTENTION_IMPLEMENTATIONS`: ``sdpa`` (boolean mask) or
        ``eager`` (additive float mask). The mask is built in the form each one needs.
    tokenizer : transformers tokenizer or None
        Needed for text prompts and stop strings.

    Raises
    ------
    ModelLoadError
        The model uses another attention implementation (``flash_attention_2``, ...),
        which cannot apply the masks of padded batches, cache holes and draft trees.
    """

    def __init__(self, model: Any, tokenizer: Any = None, *, name: str = "") -> None:
        attention = getattr(model.config, "_attn_implementation", None) or "eager"
        if attention not in ATTENTION_IMPLEMENTATIONS:
            raise ModelLoadError(
                f"attn_implementation {attention!r} is not supported: decodekit masks padding, "
                f"cache holes and draft trees with a 4D mask, which only "
                f"{' and '.join(ATTENTION_IMPLEMENTATIONS)} apply; load the model with "
                "attn_implementation='sdpa'"
            )
        self.attention = attention
        self.hf = model.eval()
        self.tokenizer = tokenizer
        self.name = name or getattr(model.config, "_name_or_path", "") or type(model).__name__
        config = model.config
        self.vocab_size = int(model.get_output_embeddings().weight.shape[0])
        self.context_length = int(getattr(config, "max_position_embeddings", 2048) or 2048)
        eos: set[int] = set()
        for source in (getattr(model, "generation_config", None), config, tokenizer):
            value = getattr(source, "eos_token_id", None) if source is not None else None
            if isinstance(value, int):
                eos.add(value)
            elif isinstance(value, list | tuple):
                eos.update(int(v) for v in value)
        self.eos_token_ids = frozenset(eos)
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype

    accepts_input_embeddings = True

    def new_cache(self, rows: int) -> HFCache:  # noqa: D102
        return HFCache(rows, self.device, self.hf.config)

    @torch.inference_mode()
    def embed(self, tokens: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.hf.get_input_embeddings()(tokens.to(self.device)).float()  # type: ignore[no-any-return]

    @torch.inference_mode()
    def forward(  # noqa: D102
        self, step: StepBatch, cache: KVCache, *, hidden_states: bool = False
    ) -> ForwardResult:
        if not isinstance(cache, HFCache):
            raise TypeError("HFModel.forward needs the cache from HFModel.new_cache()")
        plain = step.ancestors is None and cache.all_valid
        mask = None if plain else self._mask(step_attention_mask(cache.valid, step))
        inputs: dict[str, torch.Tensor] = {"input_ids": step.tokens}
        if step.input_embeds is not None and step.embedded is not None:
            embeds = self.hf.get_input_embeddings()(step.tokens)
            given = step.input_embeds.to(embeds.dtype)
            inputs = {"inputs_embeds": torch.where(step.embedded.unsqueeze(-1), given, embeds)}
        out = self.hf(
            **inputs,
            position_ids=step.positions,
            attention_mask=mask,
            cache=cache.hf,
            use_cache=True,
            logits_to_keep=step.logits_count,
            output_hidden_states=hidden_states,
        )
        cache.appended(step.slot_valid)
        hidden = out.hidden_states[-1].float() if hidden_states else None
        return ForwardResult(logits=out.logits.float(), hidden_states=hidden)

    def _mask(self, allowed: torch.Tensor) -> torch.Tensor:
        """The 4D mask in the form the attention implementation reads.

        sdpa takes the boolean mask as is; eager adds the mask to the attention scores, so
        it gets 0 where a slot may attend and the dtype's most negative value elsewhere.
        """
        if self.attention == "sdpa":
            return allowed
        blocked = torch.finfo(self.dtype).min
        additive = torch.zeros(allowed.shape, dtype=self.dtype, device=allowed.device)
        return additive.masked_fill_(~allowed, blocked)

    def encode(self, prompt: str, *, raw: bool = False) -> list[int]:  # noqa: D102
        if self.tokenizer is None:
            raise PromptError("This model has no tokenizer; pass token ids instead of text")
        if not raw and getattr(self.tokenizer, "chat_template", None):
            ids = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}],
                add_generation_prompt=True,
                tokenize=True,
                return_dict=False,
            )
            if isinstance(ids, dict) or hasattr(ids, "input_ids"):
                ids = ids["input_ids"]
            return [int(i) for i in ids]
        return [int(i) for i in self.tokenizer.encode(prompt, add_special_tokens=True)]

    def decode(self, token_ids: list[int]) -> str:  # noqa: D102
        if self.tokenizer is None:
            return " ".join(str(t) for t in token_ids)
        return str(self.tokenizer.decode(token_ids, skip_special_tokens=True))


def load_model(
    path: str | Path | None = None,
    *,
    dtype: DTypeName = "float32",
    device: str = "cpu",
    attn_implementation: str = "sdpa",
) -> HFModel:
    """Load a local Hugging Face causal LM directory, or the embedded default model.

    Parameters
    ----------
    path : str or Path or None
        A directory with ``config.json``, weights and a tokenizer. None loads the
        embedded SmolLM2-135M-Instruct (converted once from its GGUF file and cached).
    dtype : {"float32", "bfloat16"}
        Weights and activations dtype.
    device : str
        ``"cpu"`` or a CUDA device.
    attn_implementation : {"sdpa", "eager"}
        The transformers attention implementation (see :data:`ATTENTION_IMPLEMENTATIONS`).

    Raises
    ------
    ModelLoadError
        The path does not exist or holds no loadable causal LM, or an argument is invalid.
    """
    if dtype not in DTYPES:
        raise ModelLoadError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    if attn_implementation not in ATTENTION_IMPLEMENTATIONS:
        raise ModelLoadError(
            f"attn_implementation must be one of {list(ATTENTION_IMPLEMENTATIONS)}, "
            f"got {attn_implementation!r}"
        )
    if path is None:
        from decodekit.embedded import prepare_embedded_model

        path = prepare_embedded_model()
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelLoadError(f"Model path not found: {path}")
    if not (path / "config.json").is_file():
        raise ModelLoadError(
            f"{path} is not a Hugging Face model directory (no config.json in it)"
        )
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    # no "Loading weights" progress bar: the CLI's --json output must stay parseable
    hf_logging.disable_progress_bar()
    try:
        config = json.loads((path / "config.json").read_text())
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=DTYPES[dtype], attn_implementation=attn_implementation,
            local_files_only=True,
        ).to(device)
    except Exception as exc:
        raise ModelLoadError(f"Could not load a causal LM from {path}: {exc}") from exc
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as exc:
        raise ModelLoadError(f"Could not load the tokenizer from {path}: {exc}") from exc
    name = str(config.get("_name_or_path") or path.name)
    return HFModel(model, tokenizer, name=name)

