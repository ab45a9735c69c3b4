"""Test kit: toy models with exactly known distributions, and distribution checks.

Use it in a plugin's own test suite to prove what a strategy claims:

>>> from decodekit.testing import MarkovModel, exact_sequence_distribution, sample_sequences
>>> model = MarkovModel.random(vocab_size=4, seed=0)
>>> exact = exact_sequence_distribution(model, prompt=[0], length=3, temperature=0.8)
>>> samples = sample_sequences(model, [0], length=3, n=4000, strategy="sample",
...                            temperature=0.8, seed=1)
>>> assert_matches_distribution(samples, exact, alpha=1e-4)   # chi-square test

:class:`MarkovModel` is a first-order Markov chain over a small vocabulary that the
decode loop drives like a real model (token trees, KV-cache operations and all), so the
exact probability of every output sequence is a product of transition probabilities.
The reference warpers here are written for clarity (float64, plain loops) and are
independent of the kernels the strategies use.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from decodekit.model import ForwardResult, KVCache, LanguageModel, SlotCache
from decodekit.tree import StepBatch

__all__ = [
    "ChiSquareResult",
    "MarkovModel",
    "PluginCheckError",
    "PluginReport",
    "assert_greedy_equivalent",
    "assert_lossless",
    "assert_matches_distribution",
    "check_plugin",
    "chi2_sf",
    "chi_square_test",
    "exact_sequence_distribution",
    "next_token_logits",
    "reference_penalties",
    "reference_warp",
    "registered_plugin",
    "sample_sequences",
    "tiny_llama",
    "total_variation",
]


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


@contextlib.contextmanager
def registered_plugin(plugin: object, name: str | None = None) -> Iterator[str]:
    """Register a plugin object for the duration of a ``with`` block.

    >>> class MyPlugin:
    ...     @decodekit.hookimpl
    ...     def register_strategies(self, register): register(MY_STRATEGY)
    >>> with registered_plugin(MyPlugin()):
    ...     decodekit.generate("Hi", strategy="mine")

    Yields the name it was registered under.
    """
    from decodekit.plugins import get_registry, invalidate_registry, pm

    get_registry()  # load the installed plugins first
    registered = pm.register(plugin, name=name)
    if registered is None:
        raise ValueError(f"plugin {name!r} is blocked")
    invalidate_registry()
    try:
        yield registered
    finally:
        pm.unregister(plugin)
        invalidate_registry()


# ----------------------------------------------------------------- reference warpers


def reference_penalties(
    logits: Sequence[float],
    history: Sequence[int],
    prompt_length: int,
    *,
    repetition_penalty: float = 1.0,
    presence_penalty: float = 0.0,
    frequency_penalty: float = 0.0,
) -> list[float]:
    """Penalized logits, computed plainly.

    CTRL repetition over the whole history; presence and frequency over generated
    tokens (history positions from ``prompt_length`` on).
    """
    out = list(logits)
    for token in set(history):
        value = out[token]
        out[token] = value / repetition_penalty if value > 0 else value * repetition_penalty
    generated = Counter(history[prompt_length:])
    for token, count in generated.items():
        out[token] -= presence_penalty + frequency_penalty * count
    return out


def reference_warp(
    logits: Sequence[float],
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    min_p: float = 0.0,
    typical_p: float = 1.0,
) -> list[float]:
    """The distribution sampling settings define, computed plainly in float64.

    Order as in Hugging Face: temperature, top-k, top-p, min-p, typical-p; temperature 0
    or top-k 1 is argmax (one-hot, lowest index on ties). Cuts keep ties: top-k keeps
    every token tied with the k-th, top-p every token tied with the last one needed to
    reach the mass, typical-p every token as close to the entropy as the last one kept.
    """
    values = [float(v) for v in logits]
    vocab = len(values)
    if temperature == 0.0 or top_k == 1:
        best = max(range(vocab), key=lambda i: (values[i], -i))
        return [1.0 if i == best else 0.0 for i in range(vocab)]
    scaled = [v / temperature for v in values]
    keep = [not math.isinf(v) or v > 0 for v in scaled]
    if 0 < top_k < vocab:
        kth = sorted(scaled, reverse=True)[top_k - 1]
        keep = [k and s >= kth for k, s in zip(keep, scaled, strict=True)]

    def normalized(mask: list[bool]) -> list[float]:
        peak = max(s for s, m in zip(scaled, mask, strict=True) if m)
        weights = [math.exp(s - peak) if m else 0.0 for s, m in zip(scaled, mask, strict=True)]
        total = sum(weights)
        return [w / total for w in weights]

    probs = normalized(keep)
    if top_p < 1.0:  # keep a token while the mass of strictly more likely tokens < top_p
        for i in range(vocab):
            above = sum(p for p in probs if p > probs[i])
            if probs[i] == 0.0 or above >= top_p:
                keep[i] = False
        probs = normalized(keep)
    if min_p > 0.0:
        peak = max(probs)
        keep = [k and p >= min_p * peak for k, p in zip(keep, probs, strict=True)]
        probs = normalized(keep)
    if typical_p < 1.0:
        entropy = -sum(p * math.log(p) for p in probs if p > 0)
        support = [i for i in range(vocab) if probs[i] > 0]
        distance = {i: abs(-math.log(probs[i]) - entropy) for i in support}
        order = sorted(support, key=lambda i: distance[i])
        mass = 0.0
        cut = distance[order[0]]
        for i in order:  # the shortest prefix by distance whose mass reaches typical_p
            if mass >= typical_p:
                break
            cut = distance[i]
            mass += probs[i]
        keep = [i in distance and distance[i] <= cut for i in range(vocab)]  # ties kept
        probs = normalized(keep)
    return probs


def next_token_logits(model: LanguageModel, sequence: Sequence[int]) -> list[float]:
    """The model's logits after ``sequence``, computed with no KV cache at all.

    A :class:`MarkovModel` reads its table; a Hugging Face model (:func:`tiny_llama`) runs
    one plain forward over the whole sequence, so the result is independent of the
    decode loop's cache, masks and positions: the reference they are tested against.
    """
    if isinstance(model, MarkovModel):
        return model.log_probs[sequence[-1]].double().tolist()
    hf = getattr(model, "hf", None)
    if hf is None:
        raise TypeError(f"next_token_logits: no plain forward for {type(model).__name__}")
    with torch.inference_mode():
        ids = torch.tensor([list(sequence)], device=model.device)
        return hf(input_ids=ids).logits[0, -1].double().tolist()


def exact_sequence_distribution(
    model: LanguageModel,
    prompt: Sequence[int],
    length: int,
    **settings: float,
) -> dict[tuple[int, ...], float]:
    """Exact probability of every output of ``length`` tokens under sampling settings.

    ``settings`` are :class:`~decodekit.config.SamplingParams` fields (warpers and
    penalties). A sequence that hits the model's EOS ends there (shorter key). The model
    is a :class:`MarkovModel` or a small Hugging Face model such as :func:`tiny_llama`
    (with real attention, positions and a cache; its logits come from
    :func:`next_token_logits`): keep ``V ** length`` small.
    """
    penalty_keys = ("repetition_penalty", "presence_penalty", "frequency_penalty")
    penalties = {k: settings[k] for k in penalty_keys if k in settings}
    warp = {k: v for k, v in settings.items() if k not in penalty_keys}
    result: dict[tuple[int, ...], float] = {}

    def extend(sequence: list[int], generated: tuple[int, ...], prob: float) -> None:
        if len(generated) == length or (generated and generated[-1] in model.eos_token_ids):
            result[generated] = result.get(generated, 0.0) + prob
            return
        logits = next_token_logits(model, sequence)
        if penalties:
            logits = reference_penalties(logits, sequence, len(prompt), **penalties)
        probs = reference_warp(logits, **warp)
        for token, p in enumerate(probs):
            if p > 0.0:
                extend([*sequence, token], (*generated, token), prob * p)

    extend(list(prompt), (), 1.0)
    return result


def sample_sequences(
    model: LanguageModel,
    prompt: Sequence[int],
    *,
    length: int,
    n: int,
    strategy: str = "sample",
    seed: int = 0,
    batch: int = 2048,
    **params: Any,
) -> Counter[tuple[int, ...]]:
    """Generate ``n`` outputs of up to ``length`` tokens and count them.

    Rows run in batches of ``batch`` identical prompts; batch ``b`` is one call with the
    integer seed ``seed + done`` (``done`` rows before it), which gives each of its rows a
    seed of its own, so every output is an independent draw. Extra keywords are strategy parameters.
    """
    from decodekit.engine import Engine

    engine = Engine(model)
    counts: Counter[tuple[int, ...]] = Counter()
    done = 0
    while done < n:
        rows = min(batch, n - done)
        completions = engine.generate(
            [list(prompt)] * rows, strategy=strategy, max_new_tokens=length,
            seed=seed + done, **params,
        )
        for completion in completions:
            counts[tuple(completion.token_ids)] += 1
        done += rows
    return counts


# ----------------------------------------------------------------- distribution checks


@dataclass(frozen=True)
class ChiSquareResult:
    """Outcome of a chi-square goodness-of-fit test.

    Attributes
    ----------
    statistic : float
    dof : int
        Degrees of freedom (bins after pooling, minus one).
    p_value : float
    samples : int
    impossible : dict
        Outcomes observed although their exact probability is zero (must be empty).
    """

    statistic: float
    dof: int
    p_value: float
    samples: int
    impossible: dict[Any, int]


def chi_square_test(
    observed: Mapping[Any, int], expected: Mapping[Any, float], *, min_expected: float = 5.0
) -> ChiSquareResult:
    """Pearson chi-square test of observed counts against exact probabilities.

    Outcomes whose expected count is below ``min_expected`` are pooled into one bin,
    so the chi-square approximation holds. The p-value is the chi-square survival
    function, computed as the regularized upper incomplete gamma function
    ``Q(dof / 2, statistic / 2)`` in float64 (torch), so the kit needs no SciPy.
    """
    samples = sum(observed.values())
    impossible = {k: c for k, c in observed.items() if expected.get(k, 0.0) <= 0.0}
    bins: list[tuple[float, int]] = []
    pooled_expected, pooled_observed = 0.0, 0
    for outcome, prob in expected.items():
        exp_count = prob * samples
        if exp_count < min_expected:
            pooled_expected += exp_count
            pooled_observed += observed.get(outcome, 0)
        else:
            bins.append((exp_count, observed.get(outcome, 0)))
    if pooled_expected > 0:
        bins.append((pooled_expected, pooled_observed))
    statistic = sum((o - e) ** 2 / e for e, o in bins if e > 0)
    dof = max(len(bins) - 1, 1)
    return ChiSquareResult(
        statistic=statistic,
        dof=dof,
        p_value=chi2_sf(statistic, dof),
        samples=samples,
        impossible=impossible,
    )


def chi2_sf(statistic: float, dof: int) -> float:
    """Survival function ``P(X >= statistic)`` of the chi-square law with ``dof`` degrees."""
    k = torch.tensor(dof / 2.0, dtype=torch.float64)
    x = torch.tensor(max(statistic, 0.0) / 2.0, dtype=torch.float64)
    return float(torch.special.gammaincc(k, x))


def total_variation(observed: Mapping[Any, int], expected: Mapping[Any, float]) -> float:
    """Total-variation distance between empirical frequencies and exact probabilities."""
    samples = sum(observed.values()) or 1
    keys = set(observed) | set(expected)
    return 0.5 * sum(abs(observed.get(k, 0) / samples - expected.get(k, 0.0)) for k in keys)


def assert_matches_distribution(
    observed: Mapping[Any, int], expected: Mapping[Any, float], *, alpha: float = 1e-4
) -> ChiSquareResult:
    """Fail unless the counts are consistent with the exact distribution.

    Fails when an outcome of probability zero was observed, or when the chi-square test
    rejects at significance ``alpha`` (the probability that this check fails for a
    correct sampler is ``alpha``).
    """
    result = chi_square_test(observed, expected)
    if result.impossible:
        raise AssertionError(f"outcomes with probability 0 were produced: {result.impossible}")
    if result.p_value < alpha:
        worst = sorted(
            expected.items(),
            key=lambda kv: -abs(observed.get(kv[0], 0) - kv[1] * result.samples),
        )[:5]
        table = "\n".join(
            f"  {k}: observed {observed.get(k, 0)}, expected {p * result.samples:.1f}"
            for k, p in worst
        )
        raise AssertionError(
            f"chi-square rejects the target distribution: statistic {result.statistic:.1f}, "
            f"dof {result.dof}, p = {result.p_value:.2e} < alpha = {alpha} "
            f"({result.samples} samples); largest deviations:\n{table}"
        )
    return result


def all_sequences(vocab_size: int, length: int) -> Iterable[tuple[int, ...]]:
    """Every token sequence of a length (for exhaustive checks on tiny vocabularies)."""
    return itertools.product(range(vocab_size), repeat=length)


# ----------------------------------------------------------------- conformance kit


class PluginCheckError(AssertionError):
    """A plugin does not conform; the message lists every problem found."""


@dataclass(frozen=True)
class PluginReport:
    """What :func:`check_plugin` found in a conforming plugin.

    Attributes
    ----------
    name : str
    hooks : tuple of str
        Hooks the plugin implements.
    registered : dict of str to tuple of str
        Per family (``strategies``, ``drafters``, ...), the names it registers.
    """

    name: str
    hooks: tuple[str, ...]
    registered: dict[str, tuple[str, ...]]


def _family_contracts() -> dict[str, type]:
    from decodekit.components import (
        CachePolicy,
        ConstraintFactory,
        Drafter,
        LogitsProcessor,
        Verifier,
    )

    return {
        "register_drafters": Drafter,
        "register_verifiers": Verifier,
        "register_samplers": LogitsProcessor,
        "register_caches": CachePolicy,
        "register_constraints": ConstraintFactory,
    }


def _check_strategy(obj: Any, problems: list[str]) -> None:
    from pydantic import BaseModel

    from decodekit.config import StrategyParams
    from decodekit.strategy import Strategy

    if not isinstance(obj, Strategy):
        problems.append(f"register_strategies: {obj!r} is not a decodekit.Strategy")
        return
    params = obj.params
    if not (isinstance(params, type) and issubclass(params, StrategyParams)):
        problems.append(f"strategy {obj.name!r}: params {params!r} is not a StrategyParams")
        return
    if params.model_config.get("extra") != "forbid":
        problems.append(f"strategy {obj.name!r}: params model must forbid extra fields")
    try:
        params.model_json_schema()
    except Exception as exc:
        problems.append(f"strategy {obj.name!r}: params model has no JSON Schema: {exc}")
    for field_name, info in params.model_fields.items():
        if info.is_required():
            continue
        try:  # a default must validate against its own field
            default = info.get_default(call_default_factory=True)
            if not isinstance(default, BaseModel):
                params.__pydantic_validator__.validate_assignment(
                    params.model_construct(), field_name, default
                )
        except Exception as exc:
            problems.append(
                f"strategy {obj.name!r}: default of params.{field_name} is invalid: {exc}"
            )
    families = {"drafter", "verifier", "sampler", "cache", "constraint"}
    for family, _component in obj.components:
        if family not in families:
            problems.append(
                f"strategy {obj.name!r}: component family {family!r} is not one of "
                f"{sorted(families)}"
            )
    if not callable(obj.build):
        problems.append(f"strategy {obj.name!r}: build is not callable")


def _installed_plugin(name: str) -> object:
    """The loaded plugin object ``name``; a plugin that failed to import says why."""
    from decodekit.plugins import failed_plugins, get_registry, pm

    get_registry()
    found = pm.get_plugin(name)
    if found is not None:
        return found
    for failure in failed_plugins():
        if failure.name == name and failure.stage == "load":
            raise PluginCheckError(
                f"plugin {name!r} is installed but failed to import: {failure.error}"
            )
    raise PluginCheckError(f"no installed decodekit plugin is named {name!r}")


def check_plugin(plugin: object | str, name: str | None = None) -> PluginReport:
    """Check that a plugin conforms to decodekit's hook specs and contracts.

    The plugin is registered on a fresh plugin manager (the installed ones are not
    touched), so its hook implementations are validated against the specs by pluggy
    (unknown hook names, unknown arguments). Every registration hook is then called and
    what it registers is checked: strategies are :class:`~decodekit.Strategy` objects with
    a valid parameter model (``extra="forbid"``, a JSON Schema, defaults that validate);
    components subclass their contract (:class:`~decodekit.Drafter`, ...), are concrete,
    and have a ``name``; no name is registered twice, nor clashes with another installed
    plugin.

    Parameters
    ----------
    plugin : object or str
        A plugin object (usually the plugin's module), or the name of an installed plugin.
    name : str, optional
        The name to report it under; defaults to the module or object name.

    Returns
    -------
    PluginReport

    Raises
    ------
    PluginCheckError
        Listing every problem found; for the name of an installed plugin that failed
        to import, saying so with the import error.

    Examples
    --------
    >>> import decodekit_mirostat
    >>> check_plugin(decodekit_mirostat).registered["strategies"]
    ('mirostat',)
    """
    import inspect

    import pluggy

    from decodekit import hookspecs
    from decodekit.plugins import get_registry

    if isinstance(plugin, str):
        name, plugin = plugin, _installed_plugin(plugin)
    label = name or getattr(plugin, "__name__", None) or type(plugin).__name__
    problems: list[str] = []
    fresh = pluggy.PluginManager("decodekit")
    fresh.add_hookspecs(hookspecs)
    try:
        fresh.register(plugin, name=label)
        fresh.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginCheckError(f"plugin {label!r}: {exc}") from None
    hooks = tuple(sorted(h.name for h in fresh.get_hookcallers(plugin) or []))
    if not hooks:
        problems.append(f"plugin {label!r} implements no decodekit hook")
    contracts = _family_contracts()
    registered: dict[str, tuple[str, ...]] = {}
    installed = get_registry()
    for hook_name in hooks:
        if not hook_name.startswith("register_"):
            continue
        objects: list[Any] = []
        try:
            getattr(fresh.hook, hook_name)(register=objects.append)
        except Exception as exc:
            problems.append(f"{hook_name} raised {type(exc).__name__}: {exc}")
            continue
        names: list[str] = []
        for obj in objects:
            obj_name = getattr(obj, "name", None)
            if not isinstance(obj_name, str) or not obj_name:
                problems.append(f"{hook_name}: {obj!r} has no non-empty 'name'")
                continue
            if obj_name in names:
                problems.append(f"{hook_name}: {obj_name!r} is registered twice")
            names.append(obj_name)
            if hook_name == "register_strategies":
                _check_strategy(obj, problems)
            else:
                contract = contracts[hook_name]
                if not (isinstance(obj, type) and issubclass(obj, contract)):
                    problems.append(
                        f"{hook_name}: {obj_name!r} must be a subclass of "
                        f"decodekit.{contract.__name__}"
                    )
                elif inspect.isabstract(obj):
                    missing = ", ".join(sorted(obj.__abstractmethods__))
                    problems.append(f"{hook_name}: {obj_name!r} does not implement {missing}")
            family = hook_name.removeprefix("register_")
            other = getattr(installed, family, {}).get(obj_name)
            if other is not None and other.obj is not obj:
                problems.append(
                    f"{hook_name}: {obj_name!r} is already registered by plugin {other.plugin!r}"
                )
        registered[hook_name.removeprefix("register_")] = tuple(names)
    if problems:
        raise PluginCheckError(
            f"plugin {label!r} does not conform:\n" + "\n".join(f"  - {p}" for p in problems)
        )
    return PluginReport(name=label, hooks=hooks, registered=registered)


def _sampling_settings(params: Mapping[str, Any]) -> dict[str, Any]:
    from decodekit.config import SamplingParams

    return {k: v for k, v in params.items() if k in SamplingParams.model_fields}


@contextlib.contextmanager
def _strategy_named(
    strategy: Any, drafter: Any = None, verifier: Any = None
) -> Iterator[str]:
    """Yield a registered strategy name for a name, a Strategy, or components."""
    from decodekit.plugins import get_registry

    if isinstance(strategy, str) and drafter is None and verifier is None:
        get_registry().strategies[strategy]
        yield strategy
        return
    from decodekit import hookimpl
    from decodekit.strategy import Strategy

    target = strategy if isinstance(strategy, Strategy) else _component_strategy(
        drafter, verifier
    )

    class _Probe:
        @hookimpl
        def register_strategies(self, register: Any) -> None:
            register(target)

    with registered_plugin(_Probe(), name=f"decodekit-testing-{target.name}"):
        yield target.name


def _component_strategy(drafter: Any, verifier: Any) -> Any:
    """A throwaway ``sample``-like strategy around a verifier (and optional drafter)."""
    import inspect

    from decodekit.builtin.processors import PenaltiesProcessor
    from decodekit.config import SamplingParams
    from decodekit.sampling import Warper
    from decodekit.strategy import Guarantee, Pipeline, Strategy

    if verifier is None:
        raise ValueError("give a strategy, or a verifier (and optionally a drafter)")

    class ProbeParams(SamplingParams):
        """Sampling settings of the probe strategy."""

    def _make(component: Any, family: str, warper: Warper, context: Any) -> Any:
        if isinstance(component, str):
            component = context.registry.get(family, component)
        if not isinstance(component, type):
            return component
        accepted = inspect.signature(component).parameters
        return component(warper) if "warper" in accepted else component()

    def build(params: ProbeParams, context: Any) -> Pipeline:
        warper = Warper.from_params(params)
        processors = [PenaltiesProcessor.from_params(params)] if params.has_penalties else []
        return Pipeline(
            verifier=_make(verifier, "verifiers", warper, context),
            drafter=None if drafter is None else _make(drafter, "drafters", warper, context),
            processors=processors,
            warper=warper,
        )

    name = "probe_" + "_".join(
        str(getattr(c, "name", c)) for c in (drafter, verifier) if c is not None
    )
    return Strategy(
        name=name.replace("-", "_"),
        summary="conformance probe",
        params=ProbeParams,
        guarantee=Guarantee.LOSSLESS,
        components=(),
        build=build,
    )


def assert_lossless(
    strategy: Any = None,
    *,
    drafter: Any = None,
    verifier: Any = None,
    model: MarkovModel | None = None,
    prompt: Sequence[int] = (0,),
    length: int = 3,
    samples: int = 3000,
    alpha: float = 1e-4,
    seed: int = 0,
    **params: Any,
) -> ChiSquareResult:
    """Fail unless a strategy's outputs follow exactly the target model's distribution.

    Generates ``samples`` outputs of ``length`` tokens on a toy :class:`MarkovModel`
    (default: a random 5-token chain) and runs :func:`assert_matches_distribution` against
    :func:`exact_sequence_distribution` under the sampling settings among ``params``
    (temperature, top-k, top-p, min-p, typical-p, penalties). A correct strategy fails
    with probability ``alpha``; run it with fixed seeds so that it cannot flake.

    Parameters
    ----------
    strategy : str or Strategy, optional
        A registered strategy name or a Strategy object.
    drafter, verifier : str, class or object, optional
        Instead of a strategy: check a verifier (a registered name, a class taking a
        ``warper`` or nothing, or an instance), optionally with a drafter feeding it.
    model : MarkovModel, optional
    prompt, length, samples, alpha, seed
        The experiment.
    **params
        Strategy parameters (sampling settings among them).

    Examples
    --------
    >>> assert_lossless("sample", temperature=0.8, top_p=0.9)
    """
    model = model or MarkovModel.random(5, seed=seed)
    exact = exact_sequence_distribution(model, prompt, length, **_sampling_settings(params))
    with _strategy_named(strategy, drafter, verifier) as name:
        counts = sample_sequences(
            model, prompt, length=length, n=samples, strategy=name, seed=seed, **params
        )
    return assert_matches_distribution(counts, exact, alpha=alpha)


def assert_greedy_equivalent(
    strategy: Any = None,
    *,
    drafter: Any = None,
    verifier: Any = None,
    model: LanguageModel | None = None,
    prompts: Sequence[Sequence[int]] = ((0,), (1, 2), (3, 1, 4)),
    max_new_tokens: int = 12,
    **params: Any,
) -> None:
    """Fail unless a strategy's tokens equal plain greedy decoding's, prompt by prompt.

    Parameters are those of :func:`assert_lossless`; ``params`` should make the strategy
    greedy (for example ``temperature=0``). The default model is a random 8-token
    :class:`MarkovModel` (use :func:`tiny_llama` or a real model for the model path).
    """
    from decodekit.engine import Engine

    engine = Engine(model or MarkovModel.random(8, seed=0))
    plain = engine.generate([list(p) for p in prompts], strategy="greedy",
                            max_new_tokens=max_new_tokens)
    with _strategy_named(strategy, drafter, verifier) as name:
        tested = engine.generate([list(p) for p in prompts], strategy=name,
                                 max_new_tokens=max_new_tokens, **params)
    by_prompt = {c.prompt_index: c.token_ids for c in tested}
    for index, completion in enumerate(plain):
        got = by_prompt.get(index)
        if got != completion.token_ids:
            raise AssertionError(
                f"prompt {index}: {name!r} produced {got}, greedy produced "
                f"{completion.token_ids}"
            )
