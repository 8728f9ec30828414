"""Helpers for testing code built on wsmachine: a client and a server joined in memory, and
frames valid or deliberately broken.

Hypothesis strategies live in :mod:`wsmachine.testing.strategies`, which needs the
``hypothesis`` package; importing :mod:`wsmachine.testing` does not.
"""

from .frames import FrameBuilder, InvalidFrame
from .pair import ConnectionPair, Exchanged

__all__ = [
    "ConnectionPair",
    "Exchanged",
    "FrameBuilder",
    "InvalidFrame",
]
