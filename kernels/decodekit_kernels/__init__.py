"""decodekit's kernel layer: the per-step tensor work every strategy shares.

One op, one folder: ``<op>/__init__.py`` is the dispatcher (``backend="auto" |
"reference" | "torch" | "triton"``), ``<op>/reference.py`` a plain torch version written
to be obviously correct, ``<op>/vectorized.py`` the fast torch path CPU tensors take, and
``<op>/triton.py`` the Triton kernel CUDA tensors take. Randomness is an explicit input
(per-row seeds or uniforms), so every backend returns the same tokens for the same inputs.

Set ``TRITON_INTERPRET=1`` before Triton is imported to run the Triton kernels on CPU.
"""

from __future__ import annotations

from decodekit_kernels._noise import derive_seed, gumbel, seeds_from_generators, uniforms
from decodekit_kernels._triton import triton_available, triton_interpret
from decodekit_kernels.apply_token_bitmask import apply_token_bitmask, unpack_bitmask
from decodekit_kernels.degeneration_penalty import degeneration_penalty
from decodekit_kernels.penalties import penalties
from decodekit_kernels.sample import probs_after_sampling_params, sample
from decodekit_kernels.verify_chain import verify_chain
from decodekit_kernels.verify_tree import verify_tree

__all__ = [
    "apply_token_bitmask",
    "degeneration_penalty",
    "derive_seed",
    "gumbel",
    "penalties",
    "probs_after_sampling_params",
    "sample",
    "seeds_from_generators",
    "triton_available",
    "triton_interpret",
    "uniforms",
    "unpack_bitmask",
    "verify_chain",
    "verify_tree",
]
