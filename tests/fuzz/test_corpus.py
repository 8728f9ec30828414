"""Replay the fuzz corpus, and any crash the fuzzer saved, as regular tests.

A crash found by ``python -m tests.fuzz.run`` lands in ``tests/fuzz/crashes/<target>/`` and
fails here until fixed; then move it into ``tests/fuzz/corpus/<target>/`` to keep it as a
regression test. Needs no atheris.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz.run import CORPUS, CRASHES, TARGET_NAMES, all_targets

TARGETS = all_targets()


def _inputs() -> list[tuple[str, Path]]:
    found = []
    for target in TARGET_NAMES:
        for folder in (CORPUS / target, CRASHES / target):
            if folder.is_dir():
                found += [(target, path) for path in sorted(folder.iterdir()) if path.is_file()]
    return found


INPUTS = _inputs()


def test_every_target_has_a_corpus() -> None:
    assert set(TARGETS) == set(TARGET_NAMES)
    for target in TARGET_NAMES:
        assert any(t == target for t, _ in INPUTS), f"no corpus for {target}"


@pytest.mark.parametrize("target", TARGET_NAMES)
def test_corpus_replays_cleanly(target: str) -> None:
    # One test per target (not per file): the corpus grows to hundreds of inputs.
    function = TARGETS[target]
    failures = []
    for name, path in INPUTS:
        if name != target:
            continue
        try:
            function(path.read_bytes())
        except Exception as exc:  # report every failing input at once
            failures.append(f"{path.relative_to(CORPUS.parent)}: {type(exc).__name__}: {exc}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("target", TARGET_NAMES)
def test_empty_and_tiny_inputs(target: str) -> None:
    for data in (b"", b"\x00", b"\xff", b"\x00\x00", b"\x00\x81\x80"):
        TARGETS[target](data)
