"""Helpers for testing code built on wsmachine: a client and a server joined in memory."""

from .pair import ClientSettings, ConnectionPair, Exchanged, ServerSettings

__all__ = ["ClientSettings", "ConnectionPair", "Exchanged", "ServerSettings"]
