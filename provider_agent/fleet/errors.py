"""The fleet's own rejections, in the same tree as the backend errors.

One ``except BackendError`` catches every way a job can fail, whether one backend
failed or the fleet refused the job before any network I/O. The fleet's errors name
``"fleet"`` as their backend::

    BackendError
    └── FleetError                  the fleet refused or could not place the job
        ├── ModelNotLoadedError     no backend of the fleet serves the model
        ├── OutOfCapacityError      the fleet, or every backend serving it, is full
        └── AllBackendsFailedError  every backend tried failed (.attempts)

A job whose format no backend serving its model speaks is refused with the backend
layer's ``UnsupportedWireFormatError``, from ``"fleet"``.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

from ..backend import BackendError

__all__ = [
    "AllBackendsFailedError",
    "FLEET",
    "FleetError",
    "ModelNotLoadedError",
    "OutOfCapacityError",
]

#: The ``backend`` of the fleet's own errors.
FLEET = "fleet"


class FleetError(BackendError):
    """The fleet refused a job, or could not place it on any backend."""

    def __init__(self, message: str) -> None:
        super().__init__(FLEET, message)


class ModelNotLoadedError(FleetError):
    """No backend of the fleet serves ``model_id`` now."""

    def __init__(self, model_id: str, message: Optional[str] = None) -> None:
        self.model_id = model_id
        super().__init__(message or f"no backend serves model {model_id!r}")


class OutOfCapacityError(FleetError):
    """The fleet runs as many jobs as it may, or every backend that could take
    the job does. ``retry_after`` is a hint in seconds, when one can be given."""

    def __init__(self, message: str, retry_after: Optional[float] = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class AllBackendsFailedError(FleetError):
    """Every backend tried for a job failed before it relayed a byte.

    ``attempts`` holds each backend's error, in the order they were tried.
    """

    def __init__(self, model_id: str, attempts: Sequence[BackendError]) -> None:
        self.model_id = model_id
        self.attempts: Tuple[BackendError, ...] = tuple(attempts)
        tried = "; ".join(str(error) for error in self.attempts)
        count = len(self.attempts)
        super().__init__(
            f"model {model_id!r}: {count} backend{'s' if count != 1 else ''} "
            f"tried, all failed: {tried}"
        )
