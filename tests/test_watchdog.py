"""The watchdog: one daemon thread per process fires every call's deadline.

It starts with the first deadline (never at import), serves any number of calls,
keeps no finished call's deadline for long, and starts afresh in a forked child.
Forking happens in a separate interpreter: a test process has threads running.
"""

from __future__ import annotations

import socket
import threading
import time

from provider_agent.backend import _watch
from provider_agent.backend._watch import EXPIRED, Watch

from .processes import output_of


def test_importing_starts_no_thread():
    count = output_of(
        """
        import threading
        import provider_agent, provider_agent.backend
        print(threading.active_count())
        """
    )
    assert count == "1"


def test_many_calls_share_one_thread_and_each_deadline_fires():
    Watch(60).finish()  # the watchdog is running from here on
    before = threading.active_count()
    watches = [Watch(0.05 + i / 1000) for i in range(100)]
    assert threading.active_count() <= before
    time.sleep(0.4)
    assert all(watch.state == EXPIRED for watch in watches)


def test_a_deadline_cuts_the_socket_it_watches():
    left, right = socket.socketpair()
    with left, right:
        left.settimeout(5)
        watch = Watch(0.1)
        watch.attach(left)
        started = time.monotonic()
        assert left.recv(1) == b""  # shut down under the blocked read
        assert 0.05 <= time.monotonic() - started < 1
        assert watch.state == EXPIRED


def test_finished_calls_do_not_pile_up():
    for _ in range(2000):
        Watch(300).finish()
    assert len(_watch._watchdog._heap) < 200


def test_a_finished_call_never_fires():
    watch = Watch(0.05)
    watch.finish()
    time.sleep(0.2)
    assert watch.state is None


def test_a_forked_child_has_its_own_watchdog():
    result = output_of(
        """
        import os, socket, threading, time
        from provider_agent.backend._watch import EXPIRED, Watch

        parent_watch = Watch(0.3)  # the parent's watchdog is running
        pid = os.fork()
        if pid == 0:
            ok = threading.active_count() == 1
            left, right = socket.socketpair()
            left.settimeout(5)
            watch = Watch(0.1)
            watch.attach(left)
            ok = ok and left.recv(1) == b"" and watch.state == EXPIRED
            ok = ok and threading.active_count() == 2
            parent_watch.finish()  # a call inherited from the parent
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        time.sleep(0.4)
        print(os.waitstatus_to_exitcode(status), parent_watch.state)
        """
    )
    assert result == "0 expired"
