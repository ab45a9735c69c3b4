"""Model-free drafters for decodekit: ``prompt_lookup`` and ``token_recycling``.

Neither runs a draft model: prompt lookup copies the continuation of an earlier
occurrence of the row's last n-gram (fast on input-grounded tasks such as editing code),
token recycling reads a draft tree from an adjacency table of the target model's own
top-k candidates at earlier steps (helps on open-ended text). Both are deterministic
(one-hot proposals), so exact-match verification keeps greedy output unchanged and the
speculative verifiers keep sampling lossless: for one-hot drafts they commit the very
tokens ``sample`` draws with the same seed, so drafting changes speed, not tokens.
Select them by name in a speculative strategy::

    engine.generate(prompt, strategy="speculative", drafter="prompt_lookup", draft_length=10)
"""

from __future__ import annotations

from collections.abc import Callable

from decodekit import hookimpl
from decodekit.contracts import Drafter
from decodekit_lookup.prompt_lookup import NgramIndex, PromptLookupDrafter, PromptLookupOptions
from decodekit_lookup.token_recycling import (
    AdjacencyTable,
    TokenRecyclingDrafter,
    TokenRecyclingOptions,
    TreeTemplate,
    static_tree,
)

__all__ = [
    "AdjacencyTable",
    "NgramIndex",
    "PromptLookupDrafter",
    "PromptLookupOptions",
    "TokenRecyclingDrafter",
    "TokenRecyclingOptions",
    "TreeTemplate",
    "static_tree",
]


@hookimpl
def register_drafters(register: Callable[[type[Drafter]], None]) -> None:
    """Register ``prompt_lookup`` and ``token_recycling``."""
    register(PromptLookupDrafter)
    register(TokenRecyclingDrafter)
