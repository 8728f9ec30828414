"""WebSocket extensions (RFC 6455 §9)."""

from .base import Extension, ExtensionCodec

__all__ = ["Extension", "ExtensionCodec"]
