"""Handing freed heap memory back to the operating system between chunks of work."""

from __future__ import annotations

import os

import numpy as np
import pytest

from affectgraph import memory


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(memory._malloc_trim() is None, reason="needs glibc's malloc_trim")
def test_free_memory_inside_the_heap_goes_back_to_the_os() -> None:
    # 64 KiB blocks come from the heap (below malloc's mmap threshold); the last one pins the
    # heap's top, so freeing the others leaves ~25 MB free but resident until they are released.
    blocks = [np.ones(8192) for _ in range(400)]
    pin = np.ones(8192)
    del blocks
    before = _rss_mb()
    assert memory.release_free_memory()
    assert before - _rss_mb() > 15
    assert pin.sum() == 8192


def test_a_c_library_without_malloc_trim_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_malloc_trim", lambda: None)
    assert memory.release_free_memory() is False
