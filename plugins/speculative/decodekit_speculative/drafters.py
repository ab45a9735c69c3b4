"""Model-based drafters: ``draft_model`` (a second, smaller LM) and ``layer_skip``.

Both run a causal LM of their own through a :class:`~decodekit.substate.SubState`: the
loop's own step function over the draft model, one step per draft token, with a
:class:`DraftSampler` as that state's verifier. Before each draft the sub-state is synced
to the target's rows: every row's cache is rolled back to the longest common prefix of
what it holds and the row's committed tokens (rejected draft tokens leave it this way,
whatever number each row accepted), and the committed tokens it lacks are fed in the
first step. Under greedy settings they propose argmax tokens (deterministic drafts);
otherwise they sample with the kernel layer from their own logits warped with the
target's warper and report that distribution as the node's proposal, so rejection
sampling stays lossless. The logits stay on the model's device.

Their randomness is per row: one kernel seed per row and step from the row's generator,
and the ``i``-th draft token is drawn with a seed derived from (seed, ``i``). So a row's
draft never depends on how long the other rows' drafts run, and the first ``k`` tokens
of a draft of length ``n > k`` are the draft of length ``k`` (adaptive lengths).
"""

from __future__ import annotations

import copy
import json
import threading
from pathlib import Path
from typing import Any, Literal

import decodekit_kernels as kernels
import torch
from pydantic import ConfigDict, Field, field_validator

from decodekit import BuildContext
from decodekit.config import StrategyParams
from decodekit.contracts import (
    DecodeView,
    Drafter,
    DraftTree,
    LanguageModel,
    Selection,
    StepOutput,
    Verifier,
)
from decodekit.errors import ConfigError, ModelLoadError
from decodekit.model import DTYPES, HFModel
from decodekit.sampling import Warper
from decodekit.substate import SubState

__all__ = [
    "DraftModelDrafter",
    "DraftSampler",
    "LayerSkipDrafter",
    "ModelDrafter",
    "shallow_model",
]

#: Draft models loaded from a directory, by (path, dtype, device), with the fingerprint
#: of the files they were loaded from: a changed directory is loaded again.
_models: dict[tuple[str, str, str], tuple[tuple[tuple[str, int, int], ...], HFModel]] = {}
_models_lock = threading.Lock()

#: Files whose change means a model directory holds another model.
_MODEL_FILES = ("config.json", "*.safetensors", "*.safetensors.index.json", "*.bin",
                "*.bin.index.json", "*.pt", "*.pth")


def _fingerprint(path: Path) -> tuple[tuple[str, int, int], ...]:
    """(name, mtime in ns, size) of the config and weight files of a model directory."""
    files = sorted({f for pattern in _MODEL_FILES for f in path.glob(pattern) if f.is_file()})
    stamps = []
    for f in files:
        stat = f.stat()
        stamps.append((f.name, stat.st_mtime_ns, stat.st_size))
    return tuple(stamps)


def _read_model(path: Path, dtype: str, device: str) -> HFModel:
    """Load a Hugging Face causal LM directory, with its tokenizer if it has a usable one.

    A draft model only ever sees token ids, so its tokenizer is optional: without one
    (no tokenizer files, or files transformers cannot read) only the vocabulary sizes are
    compared with the target's; with one, the token-to-id maps are compared too.
    """
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"drafter_options.model: {path} is not a Hugging Face model directory "
            "(no config.json in it)"
        )
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        config = json.loads((path / "config.json").read_text())
        hf = AutoModelForCausalLM.from_pretrained(
            path, dtype=DTYPES[dtype], attn_implementation="sdpa", local_files_only=True
        ).to(device)
    except Exception as exc:
        raise ModelLoadError(f"Could not load a draft model from {path}: {exc}") from exc
    tokenizer = None
    names = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
    if any((path / name).is_file() for name in names):
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        except Exception:  # ids are all a draft model needs: do without the tokenizer
            tokenizer = None
    return HFModel(hf, tokenizer, name=str(config.get("_name_or_path") or path.name))


def _load_draft_model(path: str | Path | None, dtype: str, device: str) -> HFModel:
    """Load a draft model directory, reusing an earlier load while its files are unchanged.

    The cache is keyed on the resolved path, dtype and device, and holds the fingerprint
    (modification time and size of ``config.json`` and the weight files) of the load: a
    directory whose files changed on disk is loaded again, and the stale copy dropped.
    """
    if path is None:
        from decodekit.embedded import prepare_embedded_model

        path = prepare_embedded_model()
    resolved = Path(path).expanduser().resolve()
    if not resolved.is_dir():
        raise ConfigError(f"drafter_options.model: model directory not found: {resolved}")
    key = (str(resolved), dtype, device)
    with _models_lock:
        stamp = _fingerprint(resolved)
        cached = _models.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        _models.pop(key, None)  # free the stale copy before loading the new one
        model = _read_model(resolved, dtype, device)
        _models[key] = (stamp, model)
        return model


class DraftSampler(Verifier):
    """The verifier of a model drafter's sub-state: one token per row from the draft logits.

    Greedy settings take the argmax; otherwise the token is drawn with the kernel layer
    (:meth:`Warper.sample`) from the warped draft distribution, which it keeps as the
    node's proposal. The drafter sets :attr:`seeds` (one per row and draft token) before
    each sub-step.

    Parameters
    ----------
    warper : Warper
        The target's sampling settings.

    Attributes
    ----------
    seeds : LongTensor ``[rows]`` or None
        Kernel seeds of this sub-step.
    proposals : FloatTensor ``[rows, V]`` or None
        The distribution the last tokens were drawn from (None under greedy settings).
    confidence : FloatTensor ``[rows]`` or None
        The largest draft probability at the last sub-step.
    """

    name = "draft_sampler"

    def __init__(self, warper: Warper) -> None:
        self.warper = warper
        self.seeds: torch.Tensor | None = None
        self.proposals: torch.Tensor | None = None
        self.confidence: torch.Tensor | None = None

    def select(self, view: DecodeView, output: StepOutput, draft: DraftTree | None) -> Selection:
        """The next draft token of every row."""
        logits = output.logits[:, 0]
        if self.warper.is_greedy:
            chosen = logits.argmax(-1)
            self.proposals = None
            self.confidence = torch.softmax(logits, -1).max(-1).values
        else:
            if self.seeds is None:
                raise RuntimeError("DraftSampler.select: the drafter set no seeds")
            self.proposals = self.warper.probs(logits)
            chosen = self.warper.sample(logits, self.seeds.to(logits.device))
            self.confidence = self.proposals.max(-1).values
        return Selection.single(chosen.tolist())


class ModelDrafter(Drafter):
    """Drafts a chain per row with an LM of its own, keeping its KV cache in step.

    Parameters
    ----------
    model : LanguageModel
        The draft model (vocabulary equal to the target's).
    draft_length : int
        Tokens per draft.
    warper : Warper
        The target's sampling settings; the draft distribution is warped the same way.
    confidence_threshold : float
        Stop a row's draft before a token whose draft probability (after warping) is
        below this value (Kangaroo's early exit); 0 never stops early.
    """

    name = "model"
    deterministic = False
    #: A draft of length ``n`` begins with the draft of length ``k < n`` (adaptive mode).
    prefix_consistent = True

    def __init__(
        self,
        model: LanguageModel,
        *,
        draft_length: int,
        warper: Warper,
        confidence_threshold: float = 0.0,
    ) -> None:
        self.model = model
        self.draft_length = draft_length
        self.warper = warper
        self.confidence_threshold = confidence_threshold
        self.sampler = DraftSampler(warper)
        #: The draft model's decode state; None until the first draft (or after a failure).
        self.state: SubState | None = None

    @property
    def forwards(self) -> int:
        """Draft-model forwards of the current state."""
        return 0 if self.state is None else self.state.forwards

    def draft(self, view: DecodeView) -> DraftTree | None:
        """One chain per row of up to ``draft_length`` tokens."""
        try:
            return self._draft(view)
        except BaseException:
            self.state = None  # a failed forward leaves the cache half-written: rebuild
            raise

    def _draft(self, view: DecodeView) -> DraftTree | None:
        rows, length = len(view.sequences), max(int(self.draft_length), 1)
        if self.state is None or self.state.rows != rows:
            self.state = SubState(self.model, self.sampler, rows)
        self.state.sync(view.sequences)
        device = self.model.device
        greedy = self.warper.is_greedy
        tokens = torch.full((rows, length), -1, dtype=torch.long, device=device)
        proposals = (
            None if greedy
            else torch.zeros((rows, length, self.model.vocab_size), device=device)
        )
        # one seed per row and step, drawn whatever the batch does; token i of the draft
        # takes a seed derived from (seed, i), so rows that stop early or go on longer
        # never shift another row's randomness
        seeds = None if greedy else kernels.seeds_from_generators(view.generators).tolist()
        alive = torch.ones(rows, dtype=torch.bool, device=device)
        for i in range(length):
            if seeds is not None:
                self.sampler.seeds = torch.tensor([kernels.derive_seed(s, i) for s in seeds])
            chosen = torch.tensor([t[0] for t in self.state.step()], device=device)
            if proposals is not None and self.sampler.proposals is not None:
                proposals[:, i] = torch.where(alive.unsqueeze(1), self.sampler.proposals, 0.0)
            if self.confidence_threshold > 0 and self.sampler.confidence is not None:
                alive &= self.sampler.confidence >= self.confidence_threshold
            tokens[:, i] = torch.where(alive, chosen, -1)
            if not bool(alive.any()):
                break
        if not bool((tokens >= 0).any()):
            return None
        return DraftTree.chain(tokens, proposals)

    @classmethod
    def drafts_trees(
        cls, options: StrategyParams, *, draft_length: int, max_nodes: int | None
    ) -> bool:
        """Never: one chain per row."""
        return False

    def select_rows(self, rows: torch.Tensor) -> None:
        """Keep the draft state of the rows that stay."""
        if self.state is not None:
            self.state.select_rows(rows)


def _check_vocabulary(target: LanguageModel, draft: LanguageModel, what: str) -> None:
    if draft.vocab_size != target.vocab_size:
        raise ConfigError(
            f"{what}: the draft model's vocabulary has {draft.vocab_size} tokens but the "
            f"target's has {target.vocab_size}; a draft model must share the target's "
            "tokenizer"
        )
    t_tok, d_tok = getattr(target, "tokenizer", None), getattr(draft, "tokenizer", None)
    if t_tok is not None and d_tok is not None and t_tok.get_vocab() != d_tok.get_vocab():
        raise ConfigError(
            f"{what}: the draft model's tokenizer maps tokens to other ids than the "
            "target's; a draft model must share the target's tokenizer"
        )


def _device_name(device: Any) -> str:
    return str(torch.device(device))


class DraftModelOptions(StrategyParams):
    """Options of the ``draft_model`` drafter."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    model: Any = Field(
        None,
        description="The draft model (sharing the target's vocabulary): a local Hugging "
        "Face model directory (its tokenizer is optional), an in-memory decodekit "
        "LanguageModel or transformers causal LM, or None for the embedded "
        "SmolLM2-135M-Instruct.",
    )
    dtype: Literal["float32", "bfloat16"] = Field(
        "float32", description="Weights and activations dtype of a draft model loaded from a "
        "directory.",
    )
    device: str | None = Field(
        None, description="Device of a draft model loaded from a directory ('cpu', 'cuda', "
        "'cuda:1', ...); None: the target model's device. An in-memory model stays where it "
        "is.",
    )

    @field_validator("model")
    @classmethod
    def _model_kind(cls, value: Any) -> Any:
        if value is None or isinstance(value, str | LanguageModel):
            return value
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, torch.nn.Module) and callable(
            getattr(value, "get_output_embeddings", None)
        ):
            return value
        raise ValueError(
            "expected a model directory, a decodekit LanguageModel or a transformers causal "
            f"LM, got {type(value).__name__}"
        )

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                torch.device(value)
            except (RuntimeError, TypeError) as exc:
                raise ValueError(f"not a torch device: {exc}") from None
        return value


def _draft_model(options: DraftModelOptions, target: LanguageModel) -> LanguageModel:
    """The draft model the options name: loaded (cached by fingerprint), or in memory."""
    value = options.model
    if value is None or isinstance(value, str):
        device = options.device if options.device is not None else _device_name(target.device)
        return _load_draft_model(value, options.dtype, device)
    model = value if isinstance(value, LanguageModel) else HFModel(value, None)
    if options.device is not None and _device_name(model.device) != _device_name(options.device):
        raise ConfigError(
            f"drafter_options.device: the in-memory draft model is on {model.device}, not "
            f"{options.device}; move it there first (or leave device unset)"
        )
    return model


class DraftModelDrafter(ModelDrafter):
    """``draft_model``: a smaller causal LM with the target's vocabulary drafts each chain.

    Parameters
    ----------
    options : DraftModelDrafter.Options
        ``model`` (a directory, an in-memory model, or None), ``dtype`` and ``device``.
        A directory is loaded once per (path, dtype, device) and process, and loaded
        again when its config or weight files change on disk.
    context : BuildContext
        The target model and registry.
    draft_length, max_nodes, warper
        As in the drafter protocol (:mod:`decodekit.drafting`); drafts are
        chains, so ``max_nodes`` only caps the chain length.

    Raises
    ------
    ConfigError
        The draft model's vocabulary differs from the target's, the directory does not
        exist, or an in-memory model is not on ``device``.
    ModelLoadError
        The directory holds no loadable causal LM.
    """

    name = "draft_model"
    deterministic = False
    Options = DraftModelOptions

    def __init__(
        self,
        options: DraftModelOptions,
        *,
        context: BuildContext,
        draft_length: int,
        max_nodes: int | None,
        warper: Warper,
    ) -> None:
        model = _draft_model(options, context.model)
        _check_vocabulary(context.model, model, "drafter_options.model")
        length = min(draft_length, max_nodes) if max_nodes else draft_length
        super().__init__(model, draft_length=length, warper=warper)


def shallow_model(model: HFModel, layers: int) -> HFModel:
    """The first ``layers`` decoder layers of ``model`` with its final norm and LM head.

    The weights are shared (no copy): only the module containers are new.

    Raises
    ------
    ConfigError
        The model is not a decoder with its layers at ``model.model.layers``, or
        ``layers`` is out of range.
    """
    hf = model.hf
    inner = getattr(hf, "model", None)
    stack = getattr(inner, "layers", None)
    if not isinstance(stack, torch.nn.ModuleList):
        raise ConfigError(
            "drafter_options.layers: layer_skip needs a Hugging Face decoder with its layers "
            f"at model.model.layers (Llama, Qwen, Mistral, ...); got {type(hf).__name__}"
        )
    if not 1 <= layers < len(stack):
        raise ConfigError(
            f"drafter_options.layers: must be between 1 and {len(stack) - 1} for a model with "
            f"{len(stack)} layers, got {layers}"
        )
    config = copy.deepcopy(hf.config)
    config.num_hidden_layers = layers
    if getattr(config, "layer_types", None) is not None:
        config.layer_types = list(config.layer_types)[:layers]
    new_inner = copy.copy(inner)
    new_inner._modules = dict(inner._modules)
    new_inner.layers = torch.nn.ModuleList(list(stack)[:layers])
    new_inner.config = config
    new_hf = copy.copy(hf)
    new_hf._modules = dict(hf._modules)
    new_hf.model = new_inner
    new_hf.config = config
    return HFModel(new_hf, model.tokenizer, name=f"{model.name}[:{layers}]")


class LayerSkipOptions(StrategyParams):
    """Options of the ``layer_skip`` drafter."""

    layers: int | None = Field(
        None, ge=1,
        description="Decoder layers the draft uses (the first ones); None: a quarter of "
        "the target's layers, at least 1.",
    )
    confidence_threshold: float = Field(
        0.3, ge=0.0, le=1.0,
        description="Stop a draft before a token whose draft probability is below this "
        "value (Kangaroo's early exit); 0 never stops early.",
    )


class LayerSkipDrafter(ModelDrafter):
    """``layer_skip``: self-speculative drafting with the target's own first layers.

    The draft model is the target's first ``layers`` decoder layers followed by its final
    norm and LM head (Kangaroo, Liu et al. 2024, without the trained adapter; LayerSkip,
    Elhoushi et al. 2024): no second model, weights shared. Its KV cache is its own. A
    draft stops early when the draft's confidence in the next token falls below
    ``confidence_threshold``.

    Parameters
    ----------
    options : LayerSkipDrafter.Options
        ``layers`` and ``confidence_threshold``.
    context, draft_length, max_nodes, warper
        As in the drafter protocol.
    """

    name = "layer_skip"
    deterministic = False
    Options = LayerSkipOptions

    def __init__(
        self,
        options: LayerSkipOptions,
        *,
        context: BuildContext,
        draft_length: int,
        max_nodes: int | None,
        warper: Warper,
    ) -> None:
        target: Any = context.model
        if not isinstance(target, HFModel):
            raise ConfigError(
                "drafter: layer_skip needs a Hugging Face target model, got "
                f"{type(target).__name__}"
            )
        total = len(getattr(getattr(target.hf, "model", None), "layers", []) or [])
        layers = options.layers if options.layers is not None else max(1, total // 4)
        length = min(draft_length, max_nodes) if max_nodes else draft_length
        super().__init__(
            shallow_model(target, layers), draft_length=length, warper=warper,
            confidence_threshold=options.confidence_threshold,
        )
