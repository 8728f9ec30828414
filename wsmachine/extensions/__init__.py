"""WebSocket extensions (RFC 6455 §9) and permessage-deflate (RFC 7692)."""

from .base import Extension, ExtensionCodec
from .permessage_deflate import PerMessageDeflate, PerMessageDeflateCodec

__all__ = ["Extension", "ExtensionCodec", "PerMessageDeflate", "PerMessageDeflateCodec"]
