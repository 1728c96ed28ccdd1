"""How many jobs run, in the whole fleet and on each backend.

The counts live behind one small interface, ``CapacityStore``: take a slot under a
key if fewer than a limit are taken, give it back, count. ``LocalCapacity`` keeps
them in this process; a store shared between processes (a Redis ``INCR`` with a
check, say) would implement the same three methods, and routing would not change.
A fleet's limits are per process otherwise: N worker processes each running a
fleet of ``max_concurrent`` = 8 send up to 8 × N jobs to the engines.

A ``Slot`` is one job's hold: the fleet-wide slot for the job's whole life
(``take_fleet``), and a backend's slot for the attempt under way.
``release()`` gives both back exactly once, however many paths (end, failure,
close, cancel, garbage collection) race to call it.
"""

from __future__ import annotations

import os
import threading
from typing import Dict, Optional

from ..backend._fork import renew_after_fork

__all__ = ["ALL", "CapacityStore", "LocalCapacity", "Slot"]

#: The key of the fleet-wide count.
ALL = "*"


class CapacityStore:
    """Counts of slots taken, by key. Every method is safe from any thread."""

    def try_take(self, key: str, limit: Optional[int]) -> bool:
        """Take a slot under ``key`` if fewer than ``limit`` are taken (None:
        no limit); whether one was taken."""
        raise NotImplementedError

    def give_back(self, key: str) -> None:
        """Return a slot taken under ``key``."""
        raise NotImplementedError

    def count(self, key: str) -> int:
        """How many slots are taken under ``key`` now."""
        raise NotImplementedError


class LocalCapacity(CapacityStore):
    """The counts of this process, under one lock."""

    def __init__(self) -> None:
        self._counts: Dict[str, int] = {}
        # Re-entrant: a dropped stream gives its slot back from a finaliser,
        # which the garbage collector may run in a thread holding this lock.
        self._lock = threading.RLock()
        renew_after_fork(self)

    def try_take(self, key: str, limit: Optional[int]) -> bool:
        with self._lock:
            taken = self._counts.get(key, 0)
            if limit is not None and taken >= limit:
                return False
            self._counts[key] = taken + 1
            return True

    def give_back(self, key: str) -> None:
        with self._lock:
            taken = self._counts.get(key, 0)
            if taken <= 0:
                raise RuntimeError(f"capacity slot {key!r} given back twice")
            self._counts[key] = taken - 1

    def count(self, key: str) -> int:
        return self._counts.get(key, 0)

    def _after_fork(self) -> None:
        """Forget every slot (a forked child runs none of its parent's jobs).
        Takes no lock: another thread of the parent may have held it at the
        fork, and it stays held in the child."""
        self._counts = {}
        self._lock = threading.RLock()


class Slot:
    """One job's hold on the fleet's capacity; see the module docstring."""

    def __init__(self, store: CapacityStore) -> None:
        self._store = store
        self._backend: Optional[str] = None
        self._held = False
        self._released = False
        self._lock = threading.RLock()
        # A forked child starts with no slots: one inherited from the parent
        # is not the child's to give back.
        self._pid = os.getpid()

    def take_fleet(self, limit: Optional[int]) -> bool:
        """Take the fleet-wide slot (once); whether the fleet had one free."""
        with self._lock:
            if self._held or self._released:
                return self._held
            self._held = self._store.try_take(ALL, limit)
            return self._held

    def take_backend(self, backend_id: str, limit: Optional[int]) -> bool:
        """Hold a slot of ``backend_id`` (giving back the one held before);
        whether the backend had one free."""
        self.leave_backend()
        with self._lock:
            if not self._held or not self._store.try_take(backend_id, limit):
                return False
            self._backend = backend_id
            return True

    def leave_backend(self) -> None:
        if self._pid != os.getpid():
            return
        with self._lock:
            backend, self._backend = self._backend, None
            if backend is not None:
                self._store.give_back(backend)

    def release(self) -> bool:
        """Give everything back; True the first time, False after (and in a
        forked child, where the slot was never taken)."""
        if self._pid != os.getpid():
            return False
        with self._lock:
            if self._released:
                return False
            held, self._held, self._released = self._held, False, True
            backend, self._backend = self._backend, None
        if backend is not None:
            self._store.give_back(backend)
        if held:
            self._store.give_back(ALL)
        return True
