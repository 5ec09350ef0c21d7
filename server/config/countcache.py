"""A small cache of query results that depend only on the configuration, valid while `config_version`
is unchanged. Every configuration write (ConfigRepo, discovery, Browse's own writes) bumps that
version in its transaction, as ingest's ConfigCache relies on, so a cached answer is never older than
the last committed change. Used for the per-host item counts that page the latest data list: they
cost a scan of every item, and change only with the configuration.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class VersionedCache(Generic[V]):
    def __init__(self, size: int = 128) -> None:
        self.size = size
        self._entries: OrderedDict[Hashable, tuple[int, V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, version: int, compute: Callable[[], V]) -> V:
        """The value cached for `key` at `version`, else `compute()` (stored; the least recently used
        entries beyond `size` are dropped)."""
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None and hit[0] == version:
                self._entries.move_to_end(key)
                return hit[1]
        value = compute()  # outside the lock: two threads may both compute, neither waits on the other
        with self._lock:
            self._entries[key] = (version, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return value
