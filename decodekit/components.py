"""Transitional alias of :mod:`decodekit.contracts`."""

from decodekit.contracts import *  # noqa: F403
from decodekit.contracts import __all__  # noqa: F401
