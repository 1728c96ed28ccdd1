"""A backend (and a fleet) made before ``os.fork()`` works in the child: the child
opens its own connections, and the parent's keep working.

The fork happens in a separate Python process: forking pytest itself, with its
server threads alive, is what Python 3.12+ warns against.
"""

from __future__ import annotations

import pytest

from . import fakes
from .processes import run_python
from .server import ScriptedServer

pytestmark = pytest.mark.skipif(
    not hasattr(__import__("os"), "fork"), reason="no fork on this platform"
)

BACKEND_SCRIPT = """
import os, sys
from provider_agent.backend import Job, LlamaCppBackend

def one_job(backend):
    job = Job.new("tiny", {"messages": [{"role": "user", "content": "Hi"}]})
    return backend.run(job, lambda chunk: None).output_tokens

backend = LlamaCppBackend(sys.argv[1])
assert one_job(backend) == 2          # the parent has a pooled connection now
pid = os.fork()
if pid == 0:
    try:
        assert one_job(backend) == 2  # on a connection of the child's own
        assert backend.health().reachable
    except BaseException as exc:
        print("child:", repr(exc), flush=True)
        os._exit(1)
    os._exit(0)
_, status = os.waitpid(pid, 0)
assert os.WEXITSTATUS(status) == 0, "the child failed"
assert one_job(backend) == 2          # the parent's connection still works
print("ok")
"""


def test_a_backend_made_before_a_fork_opens_its_own_connections_in_the_child(
    server: ScriptedServer,
):
    fakes.chat(fakes.llamacpp(server))
    done = run_python(BACKEND_SCRIPT, server.url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith("ok")
    # The parent kept one connection; the child made its own.
    assert server.connections == 2
    chat_peers = [r for r in server.requests if r.method == "POST"]
    assert len(chat_peers) == 3


FLEET_SCRIPT = """
import os, sys, threading
from provider_agent import Fleet, Job
from provider_agent.backend import LlamaCppBackend

def one_job(fleet):
    job = Job.new("tiny", {"messages": [{"role": "user", "content": "Hi"}]})
    return fleet.run(job, lambda chunk: None).output_tokens

def monitor_threads():
    return [t for t in threading.enumerate() if t.name == "provider-agent-health"]

fleet = Fleet([LlamaCppBackend(sys.argv[1])], health_interval=0.2)
used = sys.argv[2] == "used"
if used:
    assert one_job(fleet) == 2
    held = fleet.execute(Job.new("tiny", {"messages": []}))  # a slot taken here
    assert fleet.in_flight == 1 and monitor_threads()
else:
    assert not monitor_threads()   # built at import, as with gunicorn --preload
pid = os.fork()
if pid == 0:
    try:
        assert fleet.in_flight == 0, "the parent's job is not the child's"
        if used:
            own = fleet.execute(Job.new("tiny", {"messages": []}))
            del held  # the parent's stream, dropped here: frees no child slot
            assert fleet.in_flight == 1, fleet.in_flight
            own.close()
        assert one_job(fleet) == 2
        assert fleet.monitor.running and len(monitor_threads()) == 1
        assert fleet.monitor.wait_for_round(5), "the child's monitor probes"
        fleet.close()
    except BaseException as exc:
        print("child:", repr(exc), flush=True)
        os._exit(1)
    os._exit(0)
_, status = os.waitpid(pid, 0)
assert os.WEXITSTATUS(status) == 0, "the child failed"
if used:
    assert fleet.in_flight == 1
    held.close()
    assert fleet.in_flight == 0
assert one_job(fleet) == 2
assert fleet.in_flight == 0
fleet.close()
print("ok")
"""


@pytest.mark.parametrize("parent", ["unused", "used"])
def test_a_fleet_made_before_a_fork_serves_jobs_in_the_child(
    parent: str, server: ScriptedServer
):
    fakes.chat(fakes.llamacpp(server))
    done = run_python(FLEET_SCRIPT, server.url, parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith("ok")
