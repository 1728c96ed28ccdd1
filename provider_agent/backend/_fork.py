"""Starting afresh in a forked child (gunicorn ``--preload``, uWSGI, multiprocessing).

A child inherits its parent's memory but none of its threads: a lock another thread
held at the fork stays held, and a pooled connection is a socket the parent still
reads. An object registered here has its ``_after_fork()`` called in the child, right
after the fork, to drop such state (new locks, new connections, no threads).
"""

from __future__ import annotations

import os
import weakref
from typing import Any

_registered: weakref.WeakSet[Any] = weakref.WeakSet()


def renew_after_fork(obj: Any) -> None:
    """Call ``obj._after_fork()`` in every child forked while ``obj`` lives."""
    _registered.add(obj)


def _renew_all() -> None:
    for obj in list(_registered):
        obj._after_fork()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_renew_all)
