"""``Fleet`` over live llama-servers: one stops while jobs run, and the others
carry on; what the fleet relays is what the engine sent."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Iterator, List, Optional

import pytest

from provider_agent.backend import BackendError, LlamaCppBackend, StreamError
from provider_agent.fleet import Fleet

from ..polling import eventually
from .engines import Engine
from .helpers import chat
from .tap import Tap, bodies

pytestmark = pytest.mark.integration

THREADS = 3


def served_model(fleet: Fleet) -> str:
    """The one model the fleet's engines list: without ``--alias``, llama-server
    names it by the path of its file, and the fleet routes by listed names."""
    (model,) = {m.model_id for m in fleet.refresh().models}
    return model


@dataclass
class Outcome:
    started: float  # time.monotonic()
    ended: float
    backend_id: Optional[str]  # that served it, or that the error names
    error: Optional[BackendError] = None


class Loop:
    """``THREADS`` threads running jobs through ``fleet`` until stopped."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.model = served_model(fleet)
        self.outcomes: List[Outcome] = []
        self.bugs: List[BaseException] = []  # anything but a BackendError
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._work, daemon=True) for _ in range(THREADS)
        ]
        for thread in self._threads:
            thread.start()

    def _work(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                result = self.fleet.run(chat(self.model, max_tokens=32), lambda c: None)
                ended = time.monotonic()
                self.outcomes.append(Outcome(started, ended, result.backend_id))
            except BackendError as exc:
                ended = time.monotonic()
                self.outcomes.append(Outcome(started, ended, exc.backend, exc))
            except BaseException as exc:  # noqa: BLE001 - the test reports it
                self.bugs.append(exc)
                return

    def served_by(self, backend_id: str) -> int:
        return sum(1 for o in self.outcomes if o.backend_id == backend_id)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)
            assert not thread.is_alive(), "a job did not end"


@pytest.fixture
def fleet_over(llama: Engine, llama_spare: Engine) -> Iterator[Fleet]:
    with LlamaCppBackend(llama.url) as kept, LlamaCppBackend(llama_spare.url) as lost:
        with Fleet([kept, lost], max_concurrent=8, health_interval=1.0) as fleet:
            yield fleet


def test_jobs_carry_on_when_one_engine_stops(
    fleet_over: Fleet, llama: Engine, llama_spare: Engine
) -> None:
    fleet = fleet_over
    kept, lost = (b.id for b in fleet.backends)
    loop = Loop(fleet)
    try:
        # Both engines serve jobs first (routing spreads them by load).
        assert eventually(
            lambda: loop.served_by(kept) >= 3 and loop.served_by(lost) >= 3, 30
        ), loop.outcomes
        stopping = time.monotonic()
        # SIGTERM, then SIGKILL: while jobs keep coming, this llama-server often
        # does not exit on SIGTERM at all (seen in 2 runs of 3).
        llama_spare.stop(grace=5)
        stopped = time.monotonic()
        assert eventually(
            lambda: sum(1 for o in loop.outcomes if o.started > stopped) >= 20, 30
        ), "no jobs ran after the stop"
    finally:
        loop.stop()
    assert not loop.bugs, loop.bugs
    for outcome in loop.outcomes:
        if outcome.error is None:
            continue
        # Only a job already streaming from the engine that stopped may fail.
        assert isinstance(outcome.error, StreamError), outcome.error
        assert outcome.backend_id == lost
        assert outcome.started < stopped and outcome.ended > stopping
    after = [o for o in loop.outcomes if o.started > stopped]
    assert all(o.error is None and o.backend_id == kept for o in after), after
    status = fleet.snapshot()[lost]
    assert not status.up, status
    assert fleet.snapshot()[kept].up
    assert fleet.in_flight == 0
    assert fleet.in_flight_of(kept) == fleet.in_flight_of(lost) == 0
    assert fleet.discovery().healthy == [kept]


def test_the_fleet_relays_the_engine_stream_verbatim(llama: Engine) -> None:
    tap = Tap(llama.port)
    try:
        with LlamaCppBackend(tap.url) as backend, Fleet([backend]) as fleet:
            with fleet.execute(chat(served_model(fleet), max_tokens=12)) as stream:
                relayed = b"".join(stream)
            assert stream.backend_id == backend.id
            assert fleet.in_flight == 0
        # The tap also carried the fleet's probes and listings: find the stream.
        (sent,) = [
            body
            for reply in tap.replies()
            for head, body in bodies(reply)
            if b"text/event-stream" in head.lower()
        ]
    finally:
        tap.close()
    assert relayed == sent
    assert relayed.endswith(b"data: [DONE]\n\n")
