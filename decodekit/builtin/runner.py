"""Built-in ``run_generation`` implementation: runs the decode loop."""

from __future__ import annotations

from decodekit import hookimpl
from decodekit.engine import GenerationRequest, GenerationResult, execute


@hookimpl(trylast=True)
def run_generation(request: GenerationRequest) -> GenerationResult:
    """Decode ``request`` with :func:`decodekit.loop.run`."""
    return execute(request)
