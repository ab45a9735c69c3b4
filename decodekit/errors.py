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
    "PluginContractError",
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
        kinds = f"{kind[:-1]}ies" if kind.endswith("y") else f"{kind}s"  # strategy: strategies
        super().__init__(f"Unknown {kind} {name!r}.{hint} Installed {kinds}: {listing}.")


class PluginConflictError(DecodekitError):
    """Two plugins registered a component of the same kind under the same name."""


class PluginContractError(DecodekitError, RuntimeError):
    """A plugin's component returned something that breaks its contract.

    Raised by the decode loop's cheap per-step checks (and when a strategy builds its
    pipeline), so that a plugin bug is reported against the plugin and component that
    caused it, not as an obscure error deep inside torch or another plugin. The message
    is one line: ``plugin 'NAME' drafter 'COMPONENT': returned 3 rows for a batch of 2``.

    Parameters
    ----------
    plugin : str or None
        The plugin that registered the component (or built the pipeline), if known.
    family : str
        ``"strategy"``, ``"drafter"``, ``"verifier"``, ``"sampler"``, ``"cache"``,
        ``"constraint"`` or ``"hook"``.
    component : str
        The component's (or strategy's) name.
    problem : str
        What was wrong.
    """

    def __init__(self, plugin: str | None, family: str, component: str, problem: str) -> None:
        self.plugin = plugin
        self.family = family
        self.component = component
        self.problem = problem
        owner = f"plugin {plugin!r}" if plugin else "an unknown plugin's"
        super().__init__(f"{owner} {family} {component!r}: {problem}")


class ModelLoadError(DecodekitError):
    """A model path is missing or does not hold a loadable causal language model."""


class PromptError(DecodekitError, ValueError):
    """A prompt is empty or does not fit in the model's context."""


class ConstraintError(DecodekitError, ValueError):
    """A constraint cannot be compiled, is unsupported, or cannot be satisfied."""
