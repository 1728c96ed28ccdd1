"""Waiting for a condition that other threads or processes bring about."""

from __future__ import annotations

import time
from typing import Callable


def eventually(condition: Callable[[], bool], seconds: float = 5.0) -> bool:
    """Whether ``condition`` holds within ``seconds``, checked every 20 ms."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True
