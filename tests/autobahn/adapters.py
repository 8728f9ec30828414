"""The table of adapters under test: name → its peers (echo server, client session).

Each adapter's module is imported only when that adapter is run, so that one adapter that
does not import (optional dependency, work in progress) does not stop the others.
"""

from __future__ import annotations

import importlib

from .common import AdapterPeers

__all__ = ["ADAPTERS", "load"]

#: Adapter name → the module (in this package) holding its ``PEERS``.
ADAPTERS: dict[str, str] = {
    "selector": "peer_selector",
    "blocking": "peer_blocking",
    "trio": "peer_trio",
    "asyncio": "peer_asyncio",
}


def load(adapter: str) -> AdapterPeers:
    """The peers of ``adapter`` (a key of :data:`ADAPTERS`)."""
    module = importlib.import_module(f"{__package__}.{ADAPTERS[adapter]}")
    peers = getattr(module, "PEERS", None)
    if not isinstance(peers, AdapterPeers):
        raise TypeError(f"{module.__name__}.PEERS is not an AdapterPeers")
    return peers
