# The compiled twins of wsmachine.frames' _py_* functions. The types are what wsmachine passes;
# both sides accept any C-contiguous buffer and any int (__index__) alike.
from collections.abc import Iterable

from typing_extensions import Buffer

#: The fault kinds of parse_frames by name, from the C side's one table (frames.FaultKind).
FAULT_KINDS: dict[str, int]

def apply_mask(data: Buffer, key: Buffer, /) -> bytes: ...
def unmask(buffer: Buffer, start: int, end: int, /) -> bytes: ...
def join_unmask(parts: Iterable[Buffer], key: Buffer, /) -> bytes: ...
def unmask_inplace(buffer: Buffer, start: int, offset: int, end: int, /) -> None: ...
def parse_span(
    buffer: Buffer,
    start: int,
    end: int,
    unmasked: int,
    expect_masked: object,
    max_size: int,
    rsv_forbidden: int,
    /,
) -> tuple[list[tuple[int, bool, int, bytes]], int, tuple[int, int] | None]: ...
def parse_frames(
    buffer: Buffer, expect_masked: object, max_size: int, rsv_forbidden: int, /
) -> tuple[list[tuple[int, bool, int, bytes]], int, tuple[int, int] | None]: ...
def masked_frame(header: Buffer, key: Buffer, payload: Buffer, /) -> bytes: ...
