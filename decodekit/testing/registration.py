"""Registering a plugin object for the duration of a test."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["registered_plugin"]


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

