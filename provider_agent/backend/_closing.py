"""``Closing``: ``with`` support for anything that has a ``close()``."""

from __future__ import annotations

from types import TracebackType
from typing import Optional, Type, TypeVar

C = TypeVar("C", bound="Closing")


class Closing:
    """A ``with`` block hands back the object itself and calls ``close()`` when
    it is left, however it is left."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self: C) -> C:
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()
