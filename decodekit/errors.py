"""Exceptions raised by decodekit.

Every error a user can cause derives from :class:`DecodekitError`, so applications can
catch one type; the CLI prints its message without a traceback.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "ConstraintError",
    "DecodekitError",
    "ModelLoadError",
    "PluginConflictError",
    "PromptError",
    "UnknownComponentError",
]


class DecodekitError(Exception):
    """Base class of every error decodekit raises for bad input."""


class ConfigError(DecodekitError, ValueError):
    """A generation config or parameter is invalid.

    The message names the field path (``params.temperature``) and the reason, or the
    file and line of a syntax error.
    """


class UnknownComponentError(ConfigError):
    """A strategy or component name is not installed.

    Parameters
    ----------
    kind : str
        What was looked up: ``"strategy"``, ``"drafter"``, ...
    name : str
        The name that was asked for.
    installed : list of str
        The names that are installed, listed in the message with a close match.
    """

    def __init__(self, kind: str, name: str, installed: list[str]) -> None:
        import difflib

        self.kind = kind
        self.name = name
        self.installed = sorted(installed)
        close = difflib.get_close_matches(name, self.installed, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        listing = ", ".join(self.installed) if self.installed else "(none)"
        super().__init__(f"Unknown {kind} {name!r}.{hint} Installed {kind}s: {listing}.")


class PluginConflictError(DecodekitError):
    """Two plugins registered a component of the same kind under the same name."""


class ModelLoadError(DecodekitError):
    """A model path is missing or does not hold a loadable causal language model."""


class PromptError(DecodekitError, ValueError):
    """A prompt is empty or does not fit in the model's context."""


class ConstraintError(DecodekitError, ValueError):
    """A constraint cannot be compiled, is unsupported, or cannot be satisfied."""
