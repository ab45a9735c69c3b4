"""Hook specifications for decodekit plugins.

Every hook here is a *registration* hook: decodekit calls it once, when plugins are
loaded, and the objects a plugin registers do the per-step work. The decode loop never
calls a hook per token, so plugins add no dispatch cost to the hot path.

All hooks follow pluggy's opt-in-arguments rule: an implementation may accept fewer
arguments than the spec lists (here there is only one, ``register``). Implementations
are declared with :data:`decodekit.hookimpl`::

    from decodekit import hookimpl

    @hookimpl
    def register_strategies(register):
        register(my_strategy)

Each hook is called once per plugin; decodekit records which plugin registered what,
so that two plugins registering the same name produce an error naming both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:  # typing only: importing this module never imports torch
    from decodekit.contracts import ComponentFactory
    from decodekit.generation import GenerationRequest, GenerationResult
    from decodekit.strategy import Strategy

__all__ = ["hookimpl", "hookspec"]

#: Marker for hook specifications (this module's functions).
hookspec = pluggy.HookspecMarker("decodekit")
#: Marker for hook implementations, also exported as :data:`decodekit.hookimpl`.
hookimpl = pluggy.HookimplMarker("decodekit")


@hookspec
def register_strategies(register: Callable[[Strategy], None]) -> None:
    """Register whole decoding strategies: named presets users select by config.

    A :class:`~decodekit.Strategy` names the components it combines (drafter, verifier,
    processors, cache policy), carries a pydantic parameter model that validates the
    user's settings, declares the guarantee it claims (``lossless``,
    ``greedy-equivalent`` or ``none``) and builds a :class:`~decodekit.Pipeline` for
    one generation call.

    :param register:
        Call ``register(strategy)`` once for every strategy the plugin provides.

    Results of the hook implementations are ignored; only calls to ``register`` count.
    A strategy name registered by two plugins is an error naming both.

    Plugins may register any number of strategies, and may build them from components
    registered by other plugins (look them up with :func:`decodekit.get_registry`
    inside ``Strategy.build``, not at registration time).
    """


@hookspec
def register_drafters(register: Callable[[ComponentFactory], None]) -> None:
    """Register drafters: components that propose a token tree per row each step.

    A drafter is built by a factory (usually a class) with a ``name`` attribute and
    implements :class:`~decodekit.Drafter`. Every draft it returns carries, for every
    node, the exact proposal distribution it sampled from (float32, after its own
    logits processing), or declares itself deterministic (one-hot proposals). Lossless
    verification depends on this contract.

    :param register:
        Call ``register(factory)`` once for every drafter.

    Results of the hook implementations are ignored. A drafter name registered by two
    plugins is an error naming both.

    Plugins may register drafters without any strategy; strategies (such as a
    speculative-decoding strategy) select them by name.
    """


@hookspec
def register_verifiers(register: Callable[[ComponentFactory], None]) -> None:
    """Register verifiers: components that decide what a step commits.

    A verifier implements :class:`~decodekit.Verifier`: given the processed target
    logits for the root and every draft node, and the draft itself, it returns a
    :class:`~decodekit.Selection` (tokens to commit per row, which draft nodes' cache
    entries to keep, and optionally a reordering of rows for beam-style strategies).
    Greedy argmax, ancestral sampling, lossless rejection sampling and beam selection
    are all verifiers.

    :param register:
        Call ``register(factory)`` once for every verifier.

    Results of the hook implementations are ignored. A verifier name registered by two
    plugins is an error naming both.

    A verifier class follows the verifier protocol (:mod:`decodekit.verifying`): a
    pydantic ``Options`` model whose fields have defaults, and
    ``__init__(options=None, *, context=None, warper=None)``; strategies and the
    conformance kit build it with :func:`decodekit.verifying.build_verifier`.

    Plugins may declare ``lossless = True`` on a verifier only if the committed tokens
    follow exactly the target distribution for any proposal; the conformance kit in
    :mod:`decodekit.testing` checks it.
    """


@hookspec
def register_samplers(register: Callable[[ComponentFactory], None]) -> None:
    """Register logits processors and warpers (the sampling family).

    A processor implements :class:`~decodekit.LogitsProcessor`: it maps logits of shape
    ``[rows, nodes, V]`` to logits of the same shape, given each row's token history,
    and states whether it is argmax-invariant (greedy results do not change).

    :param register:
        Call ``register(factory)`` once for every processor.

    Results of the hook implementations are ignored. A processor name registered by two
    plugins is an error naming both.

    Plugins may register processors that strategies compose by name, or that users add
    to any strategy through the ``processors`` field of the generation config.
    """


@hookspec
def register_caches(register: Callable[[ComponentFactory], None]) -> None:
    """Register KV-cache policies: which cache entries a row keeps between steps.

    A cache policy implements :class:`~decodekit.CachePolicy`: after every step it may
    evict cache slots per row (for example, attention sinks plus a sliding window).
    The default policy, ``full``, keeps every committed token.

    :param register:
        Call ``register(factory)`` once for every policy.

    Results of the hook implementations are ignored. A policy name registered by two
    plugins is an error naming both.

    Plugins may register policies without strategies; users select them with the
    ``cache`` field of the generation config.
    """


@hookspec
def register_constraints(register: Callable[[ComponentFactory], None]) -> None:
    """Register constraint types (grammars, schemas, regular expressions, choices).

    A constraint factory implements :class:`~decodekit.ConstraintFactory`: it compiles
    a user's constraint specification for a tokenizer and returns per-row matcher state
    that fills a packed ``int32[rows, nodes, ceil(V/32)]`` bitmask, advances, forks
    (beams) and rolls back (rejected drafts). The constraint ``type`` in the generation
    config selects the factory by name.

    :param register:
        Call ``register(factory)`` once for every constraint type.

    Results of the hook implementations are ignored. A constraint type registered by two
    plugins is an error naming both.

    Plugins may raise :class:`~decodekit.ConstraintError` from ``compile`` for a
    constraint they cannot support; the error must name the unsupported feature.
    """


@hookspec(firstresult=True)
def select_kernel_backend(op: str, device: str) -> str | None:
    """Choose the kernel backend for an op on a device.

    Called once per generation call for every kernel op the decode loop uses, so that a
    plugin can route an op to a backend of its choice (for example ``"reference"`` to
    debug a result, or ``"triton"`` on a device decodekit does not route there itself).

    :param op: the kernel op name, such as ``"sample"`` or ``"apply_token_bitmask"``.
    :param device: the device type of the tensors, such as ``"cpu"`` or ``"cuda"``.

    Stops at the first non-None result; when every implementation returns None the
    kernels' own ``backend="auto"`` choice applies.

    Plugins may return one of ``"auto"``, ``"reference"``, ``"torch"`` or ``"triton"``.
    """


@hookspec(firstresult=True)
def run_generation(request: GenerationRequest) -> GenerationResult | None:
    """Wrap one whole generation call: timing, tracing or metrics.

    decodekit's own implementation (``trylast``) runs the decode loop of
    :mod:`decodekit.loop` and returns the :class:`~decodekit.GenerationResult`. The
    hook is called once per call to :meth:`decodekit.Engine.generate`, never per token.

    :param request: the validated :class:`~decodekit.GenerationRequest`: token ids per
        row, the generation config, the model and the built pipeline.

    Stops at the first non-None result.

    Plugins must implement it as a wrapper, ``@hookimpl(wrapper=True)``: yield exactly
    once and return the result received (or a replacement), ``result = yield; return
    result``; exceptions from the decode loop are raised at the ``yield``. Every strategy
    decodes through the one decode loop, so a plain implementation, which would replace
    it, is refused: an installed plugin fails to load, and :meth:`decodekit.Engine.run`
    raises :class:`~decodekit.PluginContractError` naming a plugin registered otherwise.
    """
