"""The plugin manager: loads plugins and collects what they register.

decodekit has one :class:`pluggy.PluginManager` named ``"decodekit"``. Built-in
strategies register through it exactly like external plugins, which are discovered from
the ``decodekit`` entry-point group. Environment variables control loading:

``DECODEKIT_PLUGINS``
    Comma-separated allow-list of entry-point names to load (empty: load none).
``DECODEKIT_DISABLE_PLUGINS``
    Comma-separated block-list of plugin names (entry points or built-ins).
``DECODEKIT_TRACE``
    When set to a non-empty value other than ``0``, every hook call is logged to the
    ``decodekit.plugins`` logger (and to stderr when logging is not configured).

A plugin that raises while importing or registering produces one
:class:`PluginLoadWarning` naming it (route warnings to logging with
:func:`logging.captureWarnings`); the other plugins still load. Failures are kept in
:func:`failed_plugins`, so that ``decodekit plugins`` lists them with their errors.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import logging
import os
import sys
import threading
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pluggy

from decodekit import hookspecs
from decodekit.errors import ConfigError, PluginConflictError, UnknownComponentError
from decodekit.strategy import Registered, Registry, Strategy

__all__ = [
    "COMPONENT_FAMILIES",
    "DEFAULT_PLUGINS",
    "ENTRY_POINT_GROUP",
    "ComponentInfo",
    "PluginFailure",
    "PluginInfo",
    "PluginLoadWarning",
    "Registered",
    "Registry",
    "failed_plugins",
    "get_plugins",
    "get_registry",
    "invalidate_registry",
    "list_components",
    "load_plugins",
    "loop_replacements",
    "pm",
    "reset",
]

logger = logging.getLogger("decodekit.plugins")

ENTRY_POINT_GROUP = "decodekit"

#: Built-in plugins, registered through the same path as external ones.
DEFAULT_PLUGINS: tuple[str, ...] = (
    "decodekit.builtin.greedy",
    "decodekit.builtin.sample",
    "decodekit.builtin.processors",
    "decodekit.builtin.caches",
    "decodekit.builtin.runner",
)

#: Registration hooks and the registry family each one fills.
FAMILIES: dict[str, str] = {
    "register_strategies": "strategies",
    "register_drafters": "drafters",
    "register_verifiers": "verifiers",
    "register_samplers": "samplers",
    "register_caches": "caches",
    "register_constraints": "constraints",
}

#: The component families users select from, as named in the registry.
COMPONENT_FAMILIES: tuple[str, ...] = ("drafters", "verifiers", "samplers", "caches", "constraints")

pm = pluggy.PluginManager("decodekit")
pm.add_hookspecs(hookspecs)

_lock = threading.RLock()
_loaded = False
_registry: Registry | None = None
_undo_tracing: Callable[[], None] | None = None
#: Plugins that failed to import or register, by (name, stage), in the order they failed.
_failures: dict[tuple[str, str], PluginFailure] = {}


class PluginLoadWarning(UserWarning):
    """A plugin failed to import or register; the other plugins still loaded."""


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that failed to load, or whose registration hook raised.

    Attributes
    ----------
    name : str
        The plugin (entry-point) name.
    stage : str
        ``"load"`` (importing or registering the entry point) or the ``register_*`` hook
        that raised.
    error : str
        ``ExceptionType: message``.
    version : str or None
        The version of the distribution that provides it, when known.
    """

    name: str
    stage: str
    error: str
    version: str | None = None


@dataclass(frozen=True)
class PluginInfo:
    """A plugin: its name, version, the hooks it implements and how it failed, if it did.

    Attributes
    ----------
    name : str
    version : str or None
    hooks : tuple of str
    builtin : bool
    loaded : bool
        False for a plugin that failed to import (it implements no hook then).
    errors : tuple of PluginFailure
        Its failures: to import, or of its ``register_*`` hooks.
    """

    name: str
    version: str | None
    hooks: tuple[str, ...]
    builtin: bool
    loaded: bool = True
    errors: tuple[PluginFailure, ...] = ()


def _env_list(name: str) -> list[str] | None:
    value = os.environ.get(name)
    if value is None:
        return None
    return [item.strip() for item in value.split(",") if item.strip()]


def _record_failure(name: str, stage: str, exc: BaseException, version: str | None = None) -> None:
    """Remember a failure and warn about it, once per plugin and stage.

    Only a warning, no log record: with logging unconfigured, a ``logger.warning`` is
    printed to stderr as well, and users saw every failure twice. The registry is
    collected again after every :func:`invalidate_registry`; recording by (name, stage)
    keeps a raising hook from warning again each time.
    """
    if (name, stage) in _failures:
        return
    error = f"{type(exc).__name__}: {exc}"
    _failures[(name, stage)] = PluginFailure(name, stage, error, version)
    what = "load" if stage == "load" else f"run {stage} of"
    message = f"Failed to {what} decodekit plugin {name!r}: {error}"
    warnings.warn(message, PluginLoadWarning, stacklevel=4)


def failed_plugins() -> list[PluginFailure]:
    """Plugins that failed to import, or whose ``register_*`` hook raised, in order.

    Import failures are known once plugins are loaded, hook failures once the registry
    is collected (:func:`get_registry`). :func:`reset` forgets them.
    """
    with _lock:
        return list(_failures.values())


def _forget_unregistered_failures() -> None:
    """Drop hook failures of plugins no longer registered (a test's plugin object)."""
    for key in [k for k in _failures if k[1] != "load" and pm.get_plugin(k[0]) is None]:
        del _failures[key]


def _register_module(module_name: str, plugin_name: str) -> None:
    if pm.has_plugin(plugin_name) or pm.is_blocked(plugin_name):
        return
    module = importlib.import_module(module_name)
    pm.register(module, name=plugin_name)


def _entry_points() -> Iterable[importlib.metadata.EntryPoint]:
    return importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)


def _enable_tracing() -> None:
    global _undo_tracing
    if _undo_tracing is not None:
        return

    def before(hook_name: str, impls: list[Any], kwargs: dict[str, Any]) -> None:
        names = ", ".join(impl.plugin_name for impl in impls)
        line = f"decodekit hook {hook_name}({', '.join(kwargs)}) -> [{names}]"
        logger.info(line)
        if not logging.getLogger().handlers and not logger.handlers:
            print(line, file=sys.stderr)

    def after(outcome: Any, hook_name: str, impls: list[Any], kwargs: dict[str, Any]) -> None:
        if outcome.exception is not None:
            logger.info("decodekit hook %s raised %r", hook_name, outcome.exception)

    _undo_tracing = pm.add_hookcall_monitoring(before, after)


def load_plugins() -> None:
    """Load built-in and installed plugins once (later calls do nothing).

    Honors ``DECODEKIT_PLUGINS``, ``DECODEKIT_DISABLE_PLUGINS`` and ``DECODEKIT_TRACE``.
    A plugin that fails to import produces a :class:`PluginLoadWarning` naming it.
    """
    global _loaded
    with _lock:
        if _loaded:
            return
        _loaded = True
        trace = os.environ.get("DECODEKIT_TRACE", "")
        if trace and trace != "0":
            _enable_tracing()
        for name in _env_list("DECODEKIT_DISABLE_PLUGINS") or []:
            pm.set_blocked(name)
        for module_name in DEFAULT_PLUGINS:
            _register_module(module_name, module_name)
        allowed = _env_list("DECODEKIT_PLUGINS")
        for entry_point in _entry_points():
            if allowed is not None and entry_point.name not in allowed:
                continue
            if pm.has_plugin(entry_point.name) or pm.is_blocked(entry_point.name):
                continue
            try:
                plugin = entry_point.load()
                pm.register(plugin, name=entry_point.name)
            except Exception as exc:  # a broken plugin must not break the others
                dist = entry_point.dist
                _record_failure(entry_point.name, "load", exc, dist.version if dist else None)
                continue
            if entry_point.name in loop_replacements():
                pm.unregister(plugin)
                problem = RuntimeError(
                    "run_generation must be a wrapper (@hookimpl(wrapper=True)); a plugin "
                    "may wrap the decode loop but not replace it"
                )
                dist = entry_point.dist
                _record_failure(entry_point.name, "load", problem, dist.version if dist else None)
                continue
            if entry_point.dist is not None:
                pm._plugin_distinfo.append((plugin, entry_point.dist))  # type: ignore[arg-type]
        pm.check_pending()


#: The plugin whose ``run_generation`` runs the decode loop (the only non-wrapper).
LOOP_RUNNER = "decodekit.builtin.runner"


def loop_replacements() -> list[str]:
    """Plugins whose ``run_generation`` would replace the decode loop instead of wrapping it.

    ``run_generation`` is for cross-cutting concerns (timing, tracing, metrics): every
    implementation but the built-in runner's must be a wrapper, so that every strategy
    decodes through the one decode step.
    """
    return [
        impl.plugin_name
        for impl in pm.hook.run_generation.get_hookimpls()
        if not (impl.wrapper or impl.hookwrapper) and impl.plugin_name != LOOP_RUNNER
    ]


def _collect(hook_name: str, registry: Registry) -> None:
    table: dict[str, Registered] = getattr(registry, FAMILIES[hook_name])
    caller = getattr(pm.hook, hook_name)
    for impl in caller.get_hookimpls():
        plugin_name = impl.plugin_name
        others = [p for p in pm.get_plugins() if p is not impl.plugin]
        added: list[Registered] = []

        def register(
            obj: Any, _plugin: str = plugin_name, _added: list[Registered] = added
        ) -> None:
            name = getattr(obj, "name", None)
            if not isinstance(name, str) or not name:
                raise TypeError(
                    f"{hook_name}: registered object {obj!r} has no 'name' attribute"
                )
            _added.append(Registered(name=name, plugin=_plugin, obj=obj))

        try:
            pm.subset_hook_caller(hook_name, remove_plugins=others)(register=register)
        except Exception as exc:
            _record_failure(plugin_name, hook_name, exc)
            continue
        for entry in added:
            if entry.name in table and table[entry.name].plugin != entry.plugin:
                family = FAMILIES[hook_name].rstrip("s")
                raise PluginConflictError(
                    f"{family} {entry.name!r} is registered by both plugin "
                    f"{table[entry.name].plugin!r} and plugin {entry.plugin!r}; "
                    "disable one with DECODEKIT_DISABLE_PLUGINS"
                )
            table[entry.name] = entry


def get_registry() -> Registry:
    """Return every registered strategy and component, loading plugins first.

    Raises
    ------
    PluginConflictError
        Two plugins registered the same name in one family; the message names both.
    """
    global _registry
    with _lock:
        load_plugins()
        if _registry is None:
            _forget_unregistered_failures()
            registry = Registry()
            for hook_name in FAMILIES:
                _collect(hook_name, registry)
            _registry = registry
        return _registry


def get_strategy(name: str) -> Strategy:
    """Return the installed strategy ``name`` or raise an error listing installed ones."""
    registry = get_registry()
    if name not in registry.strategies:
        raise UnknownComponentError("strategy", name, list(registry.strategies))
    return registry.strategies[name].strategy


def get_plugins(*, include_failed: bool = False) -> list[PluginInfo]:
    """List loaded plugins with their versions, the hooks they implement and failures.

    Parameters
    ----------
    include_failed : bool
        Also list plugins that failed to import (``loaded=False``). Failures of
        ``register_*`` hooks are attached once the registry was collected
        (:func:`get_registry`).
    """
    load_plugins()
    versions: dict[int, str] = {
        id(plugin): dist.version for plugin, dist in pm.list_plugin_distinfo()
    }
    failures: dict[str, list[PluginFailure]] = {}
    for failure in failed_plugins():
        failures.setdefault(failure.name, []).append(failure)
    core_version = _core_version()
    infos = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        hooks = tuple(sorted(caller.name for caller in pm.get_hookcallers(plugin) or []))
        builtin = name in DEFAULT_PLUGINS
        version = core_version if builtin else versions.get(id(plugin))
        errors = tuple(failures.pop(name, ()))
        infos.append(PluginInfo(name, version, hooks, builtin, errors=errors))
    if include_failed:  # what is left failed before it was registered
        for name, errors in failures.items():
            infos.append(PluginInfo(name, errors[0].version, (), False, False, tuple(errors)))
    return sorted(infos, key=lambda info: (not info.builtin, info.name))


@dataclass(frozen=True)
class ComponentInfo:
    """A registered component, as ``decodekit components`` lists it.

    Attributes
    ----------
    family : str
        ``"drafters"``, ``"verifiers"``, ``"samplers"``, ``"caches"`` or ``"constraints"``.
    name, plugin : str
    summary : str
        The first line of the factory's docstring ("" without one).
    options : dict
        JSON-Schema properties of the factory's ``Options`` pydantic model, if it has one.
    """

    family: str
    name: str
    plugin: str
    summary: str
    options: dict[str, Any]


def list_components(family: str | None = None) -> list[ComponentInfo]:
    """Every registered component (or those of one family), by family and name.

    Parameters
    ----------
    family : str, optional
        One of :data:`COMPONENT_FAMILIES`; the singular (``"drafter"``) works too.

    Raises
    ------
    ConfigError
        ``family`` is not a component family; the message lists the families.
    """
    families = COMPONENT_FAMILIES if family is None else (_family_name(family),)
    registry = get_registry()
    infos = []
    for name_of_family in families:
        for name, entry in sorted(getattr(registry, name_of_family).items()):
            infos.append(ComponentInfo(
                name_of_family, name, entry.plugin, _summary(entry.obj), _options(entry.obj)
            ))
    return infos


def _family_name(family: str) -> str:
    for candidate in (family, f"{family}s"):
        if candidate in COMPONENT_FAMILIES:
            return candidate
    raise ConfigError(
        f"Unknown component family {family!r}; the families are {', '.join(COMPONENT_FAMILIES)}"
    )


def _summary(obj: Any) -> str:
    # own __doc__ only: inspect.getdoc would show the contract's docstring for a class
    # without one, as if it were the component's
    doc = obj.__doc__ if isinstance(obj.__doc__, str) else ""
    lines = inspect.cleandoc(doc).splitlines()
    return lines[0] if lines else ""


def _options(obj: Any) -> dict[str, Any]:
    from pydantic import BaseModel

    model = getattr(obj, "Options", None)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return dict(model.model_json_schema().get("properties", {}))
    return {}


def _core_version() -> str | None:
    try:
        return importlib.metadata.version("decodekit")
    except importlib.metadata.PackageNotFoundError:
        return None


def invalidate_registry() -> None:
    """Forget the collected registry; the next :func:`get_registry` collects again.

    Call it after registering or unregistering a plugin object at run time.
    """
    global _registry
    with _lock:
        _registry = None


def reset() -> None:
    """Unregister every plugin and forget the registry (tests use it to reload)."""
    global _loaded, _registry, _undo_tracing
    with _lock:
        for name, plugin in list(pm.list_name_plugin()):
            if plugin is not None:
                pm.unregister(plugin, name=name)
        pm._name2plugin.clear()  # also forget blocked names
        pm._plugin_distinfo.clear()
        if _undo_tracing is not None:
            _undo_tracing()
            _undo_tracing = None
        _loaded = False
        _registry = None
        _failures.clear()
