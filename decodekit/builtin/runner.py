"""Built-in ``run_generation`` implementation: runs the decode loop."""

from __future__ import annotations

from decodekit.execute import execute
from decodekit.generation import GenerationRequest, GenerationResult
from decodekit.hookspecs import hookimpl


@hookimpl(trylast=True)
def run_generation(request: GenerationRequest) -> GenerationResult:
    """Decode ``request`` with :func:`decodekit.loop.run`."""
    return execute(request)
