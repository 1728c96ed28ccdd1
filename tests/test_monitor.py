"""``HealthMonitor``: its snapshot, its thread, its backoff and what jobs tell it."""

from __future__ import annotations

import gc
import threading
import time
from typing import Iterator, List

import pytest

from provider_agent.backend import LlamaCppBackend
from provider_agent.fleet import HealthMonitor
from provider_agent.fleet.monitor import BACKOFF_START, backoff

from . import fakes
from .polling import eventually
from .processes import run_python
from .server import ScriptedServer


def probes(srv: ScriptedServer) -> int:
    return sum(1 for r in srv.requests if r.path == "/health")


def monitor_threads() -> List[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "provider-agent-health"]


@pytest.fixture
def llama(server: ScriptedServer) -> Iterator[LlamaCppBackend]:
    fakes.llamacpp(server)
    with LlamaCppBackend(server.url) as backend:
        yield backend


@pytest.mark.parametrize(
    "failures, expected",
    [
        (0, 30.0),
        (1, BACKOFF_START),
        (2, 2.0),
        (3, 4.0),
        (5, 16.0),
        (6, 30.0),
        (99, 30.0),
    ],
)
def test_backoff_doubles_up_to_the_interval(failures, expected):
    assert backoff(failures, 30.0) == expected


def test_nothing_runs_before_start_and_refresh_probes_now(server, llama):
    monitor = HealthMonitor([llama])
    assert not monitor.running and not monitor_threads()
    assert monitor.snapshot() == {}
    status = monitor.refresh()[llama.id]
    assert status.up and status.model_ids == {"tiny"}
    assert status.health.latency_ms is not None
    assert not monitor.running


def test_the_snapshot_is_immutable_and_replaced_whole(server, llama):
    monitor = HealthMonitor([llama])
    first = monitor.refresh()
    with pytest.raises(TypeError):
        first[llama.id] = None  # type: ignore[index]
    second = monitor.refresh()
    assert first is not second
    assert first[llama.id].checked_at <= second[llama.id].checked_at


def test_the_thread_probes_on_its_interval_and_stops(server, llama):
    with HealthMonitor([llama], interval=0.2) as monitor:
        assert monitor.running
        assert eventually(lambda: probes(server) >= 3)
        assert monitor.wait_for_round(5)
        assert monitor_threads()[0].daemon
    assert not monitor.running
    assert eventually(lambda: not monitor_threads())
    count = probes(server)
    time.sleep(0.5)
    assert probes(server) == count


def test_a_failing_backend_is_probed_again_sooner_than_the_interval(server):
    server.route("GET", "/health", lambda reply: reply.reset())
    with LlamaCppBackend(server.url) as backend:
        with HealthMonitor([backend], interval=60) as monitor:
            # First round, then 1 s and 2 s of backoff: three probes in ~3 s.
            assert eventually(lambda: probes(server) >= 3, 8)
            status = monitor.snapshot()[backend.id]
            assert not status.up and status.failures >= 2


def test_a_recovered_backend_has_its_models_listed_again(server):
    server.route("GET", "/health", lambda reply: reply.reset())
    with LlamaCppBackend(server.url) as backend:
        with HealthMonitor([backend], interval=60) as monitor:
            assert eventually(lambda: backend.id in monitor.snapshot())
            assert monitor.snapshot()[backend.id].models is None
            fakes.llamacpp(server, ["fresh"])
            assert eventually(lambda: monitor.snapshot()[backend.id].up, 8)
            assert monitor.snapshot()[backend.id].model_ids == {"fresh"}
            assert monitor.snapshot()[backend.id].failures == 0


def test_mark_down_is_seen_at_once_and_probed_again_on_the_backoff(server, llama):
    with HealthMonitor([llama], interval=60) as monitor:
        assert monitor.wait_for_round(5)
        before = probes(server)
        monitor.mark_down(llama.id, "a job failed: refused")
        status = monitor.snapshot()[llama.id]
        assert not status.up and status.health.last_error == "a job failed: refused"
        assert eventually(lambda: monitor.snapshot()[llama.id].up, 5)
        assert probes(server) == before + 1


def test_forget_model_drops_it_until_the_next_listing(server, llama):
    with HealthMonitor([llama], interval=60) as monitor:
        monitor.refresh()
        listings = sum(1 for r in server.requests if r.path == "/v1/models")
        monitor.forget_model(llama.id, "tiny")
        assert monitor.snapshot()[llama.id].model_ids == frozenset()
        assert eventually(lambda: "tiny" in monitor.snapshot()[llama.id].model_ids, 5)
        assert sum(1 for r in server.requests if r.path == "/v1/models") == listings + 1


def test_stop_cuts_a_probe_that_never_answers(silent_url):
    with LlamaCppBackend(silent_url, health_timeout=30) as backend:
        monitor = HealthMonitor([backend]).start()
        time.sleep(0.3)  # the first probe is under way
        started = time.monotonic()
        monitor.stop()
        assert time.monotonic() - started < 2
        assert backend.id not in monitor.snapshot()  # a cut probe is not news


def test_the_thread_ends_when_its_monitor_is_dropped(server, llama):
    monitor = HealthMonitor([llama], interval=0.05).start()
    assert eventually(lambda: len(monitor_threads()) == 1)
    del monitor
    gc.collect()
    assert eventually(lambda: not monitor_threads(), 3)


def test_a_monitor_never_keeps_the_interpreter_from_exiting(silent_url):
    script = f"""
        import time
        from provider_agent.backend import LlamaCppBackend
        from provider_agent.fleet import HealthMonitor
        monitor = HealthMonitor([LlamaCppBackend({silent_url!r}, health_timeout=30)])
        monitor.start()
        time.sleep(0.3)   # a probe that will never be answered is under way
        print("leaving", flush=True)
    """
    started = time.monotonic()
    done = run_python(script)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "leaving"
    assert time.monotonic() - started < 10  # not the probe's 30 s


def test_bad_intervals_are_refused(llama):
    with pytest.raises(ValueError):
        HealthMonitor([llama], interval=0)
    with pytest.raises(ValueError):
        HealthMonitor([llama], timeout=-1)


def test_a_fleet_still_serving_jobs_at_exit_logs_no_error(server):
    # The main thread ends while another thread still runs jobs: the pools
    # refuse work from then on, and the monitor must stop, not fail each round.
    fakes.chat(fakes.llamacpp(server))
    script = f"""
        import logging, threading, time
        logging.basicConfig(level=logging.INFO)
        from provider_agent import Fleet, Job
        from provider_agent.backend import LlamaCppBackend
        fleet = Fleet([LlamaCppBackend({server.url!r})], health_interval=0.02)
        def serve():
            until = time.monotonic() + 1.0
            while time.monotonic() < until:
                job = Job.new("tiny", {{"messages": []}})
                fleet.run(job, lambda chunk: None)
                time.sleep(0.01)
        threading.Thread(target=serve).start()
        time.sleep(0.1)
    """
    done = run_python(script)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "ERROR" not in done.stderr


def test_a_mark_down_during_a_round_is_not_undone_by_the_round(server, llama):
    listed = fakes.slowed(server, "/v1/models", 0.5)
    monitor = HealthMonitor([llama], interval=60)
    worker = threading.Thread(target=monitor.refresh)
    worker.start()
    assert listed.wait(5)  # the probe said up; the listing is under way
    monitor.mark_down(llama.id, "a job failed: connection refused")
    worker.join(5)
    status = monitor.snapshot()[llama.id]
    assert not status.up
    assert status.health.last_error == "a job failed: connection refused"


def test_job_reports_do_not_keep_pushing_the_next_probe_away(server, llama):
    server.route("GET", "/health", lambda reply: reply.reset())
    with HealthMonitor([llama], interval=60) as monitor:
        assert monitor.wait_for_round(5)
        before = probes(server)
        # Jobs report it down more often than its backoff: the probe still comes.
        until = time.monotonic() + 3
        while time.monotonic() < until and probes(server) == before:
            monitor.mark_down(llama.id, "a job failed")
            time.sleep(0.1)
        assert probes(server) > before


def test_a_probe_that_raises_is_that_backend_s_failure_only(server, llama):
    class Broken(LlamaCppBackend):
        def health(self, timeout=None):
            raise KeyError("a bug")

    with Broken("http://127.0.0.1:9") as broken:
        snapshot = HealthMonitor([broken, llama]).refresh()
    assert snapshot[llama.id].up
    assert snapshot[broken.id].health.last_error == "probe failed: KeyError"


def test_a_model_missing_on_a_backend_never_listed_is_left_out_too(server):
    from provider_agent.fleet import Member

    server.route("GET", "/health", lambda reply: reply.reset())
    with LlamaCppBackend(server.url) as backend:
        member = Member(backend, models=frozenset({"a", "b"}))
        monitor = HealthMonitor([backend])
        monitor.refresh()
        assert member.serves(monitor.snapshot()[backend.id]) == {"a", "b"}
        monitor.forget_model(backend.id, "a")
        assert member.serves(monitor.snapshot()[backend.id]) == {"b"}
