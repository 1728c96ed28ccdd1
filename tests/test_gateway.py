"""``Gateway`` served by waitress on 127.0.0.1, in front of scripted engines: what a
client of the gateway sees for every reply, error and hang-up."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from typing import Any, Callable, Dict, Iterator, List

import pytest
import requests
from waitress import wasyncore

from provider_agent.backend import LlamaCppBackend, VllmBackend
from provider_agent.fleet import Fleet
from provider_agent.wsgi import Gateway, make_server

from . import fakes
from .polling import eventually
from .server import Reply, ScriptedServer
from .sse import DONE, data, event, text_block

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
TOKEN = "gw-" + "7" * 24


def chat_body(model: str = "tiny", **extra: Any) -> Dict[str, Any]:
    body = {
        "model": model,
        "stream": True,
        "messages": [{"role": "user", "content": "Hi"}],
    }
    body.update(extra)
    return body


class Served:
    """A gateway under waitress in a thread of this process."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.server = make_server(gateway, "127.0.0.1", 0, threads=6)
        self.port = int(self.server.effective_port)
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()

    def post(self, path: str, body: Any, **kwargs: Any) -> requests.Response:
        if not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        return requests.post(self.url + path, data=body, timeout=10, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.url + path, timeout=10, **kwargs)

    def close(self) -> None:
        self.gateway.fleet.close()
        # Closed from the loop's own thread (a socket closed under its select()
        # is EBADF there): with every socket gone, run() returns.
        sockets = self.server._map
        try:
            self.server.trigger.pull_trigger(lambda: wasyncore.close_all(sockets))
        except OSError:
            # The loop, woken by a task's own pull, ran the thunk (closing the
            # trigger) before this pull wrote to it.
            pass
        self.thread.join(5)
        assert not self.thread.is_alive()
        self.server.task_dispatcher.shutdown(timeout=5)


@pytest.fixture
def serve() -> Iterator[Callable[..., Served]]:
    made: List[Served] = []

    def start(*backends: Any, max_concurrent: int = 4, **options: Any) -> Served:
        fleet = Fleet(list(backends), max_concurrent=max_concurrent)
        served = Served(Gateway(fleet, **options))
        made.append(served)
        return served

    yield start
    for served in made:
        served.close()


@pytest.fixture
def llama(server: ScriptedServer) -> Iterator[LlamaCppBackend]:
    fakes.llamacpp(server)
    with LlamaCppBackend(server.url) as backend:
        yield backend


def chats(srv: ScriptedServer) -> int:
    return sum(1 for r in srv.requests if r.method == "POST")


# -- relaying ---------------------------------------------------------------------


def test_an_openai_stream_is_relayed_byte_for_byte(server, llama, serve) -> None:
    chunks = fakes.openai_chunks("Héllo there ✓")
    fakes.chat(server, chunks)
    gateway = serve(llama)
    reply = gateway.post(CHAT, chat_body())
    assert reply.status_code == 200
    assert reply.headers["Content-Type"] == "text/event-stream"
    assert reply.headers["Cache-Control"] == "no-cache"
    assert reply.headers["X-Provider-Agent-Backend"] == llama.id
    assert reply.content == b"".join(chunks)
    sent = server.last(CHAT).json()
    # The body as the client wrote it; the backend asks for usage, as always.
    assert sent.pop("stream_options") == {"include_usage": True}
    assert sent == chat_body()


def test_an_anthropic_stream_goes_to_the_messages_route(server, llama, serve) -> None:
    chunks = [*text_block("Hi"), event("message_stop", {"type": "message_stop"})]
    fakes.chat(server, chunks, path=MESSAGES)
    gateway = serve(llama)
    reply = gateway.post(MESSAGES, chat_body(max_tokens=8))
    assert reply.status_code == 200
    assert reply.content == b"".join(chunks)


def test_each_event_reaches_the_client_before_the_next_is_sent(
    server, llama, serve
) -> None:
    release = fakes.held(server)
    gateway = serve(llama)
    with gateway.post(CHAT, chat_body(), stream=True) as reply:
        chunks = reply.iter_content(None)
        first = next(chunks)
        assert first == fakes.openai_chunks()[0]  # while the engine holds the rest
        release.set()
        rest = b"".join(chunks)
    assert first + rest == b"".join(fakes.openai_chunks())


# -- errors before the first byte ---------------------------------------------------


def test_an_unknown_model_is_404_in_the_clients_format(server, llama, serve) -> None:
    fakes.chat(server)
    gateway = serve(llama)
    reply = gateway.post(CHAT, chat_body("gpt-7"))
    assert reply.status_code == 404
    assert reply.json()["error"]["code"] == "model_not_loaded"
    assert reply.headers["X-Provider-Agent-Error"] == "model_not_loaded"
    reply = gateway.post(MESSAGES, chat_body("gpt-7"))
    assert reply.status_code == 404
    assert reply.json()["type"] == "error"
    assert reply.json()["error"]["type"] == "not_found_error"
    assert chats(server) == 0


def test_a_full_fleet_is_429_with_retry_after(server, llama, serve) -> None:
    release = fakes.held(server)
    gateway = serve(llama, max_concurrent=1)
    with gateway.post(CHAT, chat_body(), stream=True) as held:
        next(held.iter_content(None))
        reply = gateway.post(CHAT, chat_body())
        assert reply.status_code == 429
        assert reply.headers["Retry-After"] == "1"
        assert reply.json()["error"]["type"] == "rate_limit_error"
        release.set()
        held.content  # noqa: B018 - read to the end
    assert eventually(lambda: gateway.gateway.fleet.in_flight == 0, 5)
    fakes.chat(server)
    assert gateway.post(CHAT, chat_body()).status_code == 200


def test_a_fleet_with_every_backend_down_is_unhealthy(serve) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"  # nobody listens
    gateway = serve(VllmBackend(url))
    reply = gateway.post(CHAT, chat_body())
    assert reply.status_code == 404  # down from the start: serves no model
    assert gateway.get("/health").status_code == 503


def test_a_backend_that_fails_after_routing_is_503(server, serve) -> None:
    fakes.vllm(server, keep_alive=False)
    server.json("POST", CHAT, {"error": "overloaded"}, status=503)
    gateway = serve(VllmBackend(server.url))
    reply = gateway.post(CHAT, chat_body())
    assert reply.status_code == 503
    assert reply.json()["error"]["code"] == "backend_unreachable"


def test_a_backend_that_hangs_is_504_at_the_deadline(server, llama, serve) -> None:
    release = threading.Event()

    def late(reply: Reply) -> None:
        release.wait(10)  # not even the headers until then

    server.route("POST", CHAT, late)
    gateway = serve(llama, deadline_ms=300)
    reply = gateway.post(CHAT, chat_body())
    release.set()
    assert reply.status_code == 504
    assert reply.json()["error"]["code"] == "backend_timeout"


def test_an_upstream_4xx_keeps_its_status_and_message(server, llama, serve) -> None:
    error = {"error": {"code": 400, "message": "n_probs is too big", "type": "x"}}
    server.json("POST", CHAT, error, status=400)
    server.json("POST", MESSAGES, error, status=400)
    gateway = serve(llama)
    reply = gateway.post(CHAT, chat_body())
    assert (reply.status_code, reply.json()["error"]["message"]) == (
        400,
        "n_probs is too big",
    )
    reply = gateway.post(MESSAGES, chat_body())
    assert reply.status_code == 400
    assert reply.json()["error"] == {
        "type": "invalid_request_error",
        "message": "n_probs is too big",
    }


# -- errors after the first byte ----------------------------------------------------


def test_a_cut_stream_ends_with_an_error_event(server, llama, serve, caplog) -> None:
    first = fakes.openai_chunks()[0]
    server.stream("POST", CHAT, [first])  # ends without [DONE]
    gateway = serve(llama)
    with caplog.at_level(logging.WARNING, "provider_agent.wsgi"):
        reply = gateway.post(CHAT, chat_body())
    assert reply.status_code == 200
    assert reply.content.startswith(first)
    event_bytes = reply.content[len(first) :]
    assert event_bytes.startswith(b"data: {") and event_bytes.endswith(b"\n\n")
    error = json.loads(event_bytes[len(b"data: ") :])["error"]
    assert error["code"] == "stream_error"
    assert "before its terminator" in error["message"]
    assert any("failed after" in r.getMessage() for r in caplog.records)


def test_a_cut_inside_an_event_drops_that_event(server, llama, serve, caplog) -> None:

    first = fakes.openai_chunks()[0]
    server.stream("POST", CHAT, [first, b'data: {"choices": [{"cut-'])
    gateway = serve(llama)
    with caplog.at_level(logging.WARNING, "provider_agent.wsgi"):
        reply = gateway.post(CHAT, chat_body())
    assert reply.content.startswith(first + b'data: {"error"')
    assert b"cut-" not in reply.content
    assert any(
        "25 bytes of an unfinished event" in r.getMessage() for r in caplog.records
    )


def test_an_event_split_across_reads_is_handed_over_whole(server, llama, serve):
    chunks = fakes.openai_chunks("one two")
    middle = chunks[1]
    steps = [chunks[0], middle[:9], 0.05, middle[9:], *chunks[2:]]
    server.stream("POST", CHAT, steps)
    gateway = serve(llama)
    with gateway.post(CHAT, chat_body(), stream=True) as reply:
        received = list(reply.iter_content(None))
    assert b"".join(received) == b"".join(chunks)
    assert middle in received  # never its halves


def test_a_last_event_without_its_blank_line_is_passed_on(server, llama, serve):
    chunks = fakes.openai_chunks()
    body = [*chunks[:-1], b"data: [DONE]"]  # the stream ends without "\n\n"
    server.stream("POST", CHAT, body)
    gateway = serve(llama)
    assert gateway.post(CHAT, chat_body()).content == b"".join(body)


def test_a_body_that_is_not_sse_is_not_held_back_forever(
    server, llama, serve, monkeypatch
) -> None:
    from provider_agent.wsgi import relay

    monkeypatch.setattr(relay, "MAX_HELD", 16)
    lines = [b"x" * 40 for _ in range(5)] + [b"\n\ndata: [DONE]\n\n"]
    server.stream("POST", CHAT, lines)
    gateway = serve(llama)
    with gateway.post(CHAT, chat_body(), stream=True) as reply:
        received = list(reply.iter_content(None))
    assert b"".join(received) == b"".join(lines)
    assert received[0] == lines[0]  # over the limit: passed on as it came


def test_an_anthropic_stream_ends_with_an_anthropic_error_event(
    server, llama, serve
) -> None:
    server.stream("POST", MESSAGES, text_block("Hi"))  # no message_stop
    gateway = serve(llama)
    reply = gateway.post(MESSAGES, chat_body())
    last = reply.content.rstrip(b"\n").split(b"\n\n")[-1]
    name, payload = last.split(b"\n")
    assert name == b"event: error"
    assert json.loads(payload[len(b"data: ") :])["type"] == "error"


def test_the_deadline_mid_stream_is_an_error_event(server, llama, serve) -> None:
    chunks = fakes.openai_chunks()
    server.stream("POST", CHAT, [chunks[0], 2.0, *chunks[1:]])
    gateway = serve(llama, deadline_ms=400)
    reply = gateway.post(CHAT, chat_body())
    assert reply.status_code == 200
    assert reply.content.startswith(chunks[0])
    assert b'"code":"backend_timeout"' in reply.content
    assert eventually(lambda: gateway.gateway.fleet.in_flight == 0, 5)


def test_an_in_band_error_is_not_repeated(server, llama, serve, caplog) -> None:
    upstream = [
        fakes.openai_chunks()[0],
        data({"error": {"message": "out of memory", "type": "server_error"}}),
        DONE,
    ]
    fakes.chat(server, upstream)
    gateway = serve(llama)
    with caplog.at_level(logging.WARNING, "provider_agent.wsgi"):
        reply = gateway.post(CHAT, chat_body())
    assert reply.content == b"".join(upstream)
    assert any("out of memory" in r.getMessage() for r in caplog.records)


# -- requests refused before any backend --------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "invalid_json"),
        (b"[1, 2]", 400, "invalid_request"),  # JSON, but not an object
        (b"", 400, "invalid_json"),
        (json.dumps({"stream": True}), 400, "invalid_request"),
        (json.dumps(chat_body(model=7)), 400, "invalid_request"),
        (json.dumps(chat_body(stream=False)), 400, "stream_required"),
        (json.dumps({"model": "tiny", "messages": []}), 400, "stream_required"),
    ],
)
def test_a_bad_body_is_refused_before_any_backend(
    server, llama, serve, body, status, code
) -> None:
    fakes.chat(server)
    gateway = serve(llama)
    for path in (CHAT, MESSAGES):
        reply = gateway.post(path, body)
        assert reply.status_code == status, reply.text
        assert reply.headers["X-Provider-Agent-Error"] == code
    assert chats(server) == 0


def test_stream_false_says_that_streaming_is_required(server, llama, serve) -> None:
    gateway = serve(llama)
    reply = gateway.post(CHAT, chat_body(stream=False))
    assert '"stream": true' in reply.json()["error"]["message"]


def test_a_body_over_the_limit_is_413(server, llama, serve) -> None:
    fakes.chat(server)
    gateway = serve(llama, max_body_bytes=1000)
    small = chat_body()
    large = chat_body(messages=[{"role": "user", "content": "x" * 2000}])
    assert gateway.post(CHAT, small).status_code == 200
    reply = gateway.post(CHAT, large)
    assert reply.status_code == 413
    assert "1000 bytes" in reply.json()["error"]["message"]

    def chunked() -> Iterator[bytes]:  # no Content-Length: read up to the limit
        yield json.dumps(large).encode()

    reply = requests.post(gateway.url + MESSAGES, data=chunked(), timeout=10)
    assert reply.status_code == 413
    assert reply.json()["error"]["type"] == "request_too_large"
    assert chats(server) == 1


def test_unknown_routes_and_methods(server, llama, serve) -> None:
    gateway = serve(llama)
    reply = gateway.get("/v1/completions")
    assert reply.status_code == 404
    reply = gateway.get(CHAT)
    assert reply.status_code == 405
    assert reply.headers["Allow"] == "POST"
    reply = gateway.post("/health", b"")
    assert reply.status_code == 405


# -- models and health --------------------------------------------------------------


def test_models_are_listed_with_their_context_window(server, llama, serve) -> None:
    gateway = serve(llama)
    listing = gateway.get("/v1/models").json()
    assert listing["object"] == "list"
    (model,) = listing["data"]
    assert (model["id"], model["object"], model["context_window"]) == (
        "tiny",
        "model",
        256,
    )
    anthropic = gateway.get("/v1/models", headers={"anthropic-version": "2023-06-01"})
    body = anthropic.json()
    assert [m["id"] for m in body["data"]] == ["tiny"]
    assert body["data"][0]["type"] == "model"
    assert (body["has_more"], body["first_id"], body["last_id"]) == (
        False,
        "tiny",
        "tiny",
    )


def test_health_is_200_while_a_backend_is_up(server, llama, serve) -> None:
    gateway = serve(llama)
    reply = gateway.get("/health")
    assert reply.status_code == 200
    health = reply.json()
    assert (health["status"], health["backends_up"], health["in_flight"]) == (
        "ok",
        1,
        0,
    )
    backend = health["backends"][llama.id]
    assert backend["up"] and backend["kind"] == "llamacpp" and backend["models"] == 1
    assert health["monitor_running"] is True


# -- auth ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong"}, 401),
        ({"Authorization": "Basic " + TOKEN}, 401),
        ({"Authorization": f"Bearer {TOKEN}x"}, 401),
        ({"Authorization": "Bearer é"}, 401),
        ({"x-api-key": "wrong"}, 401),
        ({"Authorization": f"Bearer {TOKEN}"}, 200),
        ({"Authorization": f"bearer {TOKEN}"}, 200),
        ({"x-api-key": TOKEN}, 200),  # as older anthropic SDKs send it
    ],
)
def test_a_token_is_required_on_every_route(server, llama, serve, headers, status):
    fakes.chat(server)
    gateway = serve(llama, auth_token=TOKEN)
    for path in ("/health", "/v1/models"):
        reply = gateway.get(path, headers=headers)
        assert reply.status_code == status, (path, reply.text)
    reply = gateway.post(CHAT, chat_body(), headers=headers)
    assert reply.status_code == status
    if status == 401:
        assert reply.headers["WWW-Authenticate"].startswith("Bearer")
        assert reply.json()["error"]["type"] == "authentication_error"
        assert TOKEN not in reply.text
        assert chats(server) == 0


def test_the_token_is_in_no_repr(llama) -> None:
    gateway = Gateway(Fleet([llama]), auth_token=TOKEN)
    assert TOKEN not in repr(gateway) and "token required" in repr(gateway)
    assert TOKEN not in str(vars(gateway))


def test_an_empty_token_is_refused(llama) -> None:
    with pytest.raises(ValueError, match="auth_token"):
        Gateway(Fleet([llama]), auth_token=" ")


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "example.com"])
def test_only_loopback_is_served_without_a_token(llama, host) -> None:
    with pytest.raises(ValueError, match="without a token"):
        make_server(Gateway(Fleet([llama])), host, 0)


# -- hang-ups -----------------------------------------------------------------------


def endless(srv: ScriptedServer) -> threading.Event:
    """``srv`` streams a token every 20 ms for up to 20 s; the event is set
    when a write fails: the gateway let go of the connection."""
    cut = threading.Event()
    token = fakes.openai_chunks("word")[1]

    def send(reply: Reply) -> None:
        reply.start(200)
        try:
            for _ in range(1000):
                reply.write(token)
                time.sleep(0.02)
        except OSError:
            cut.set()
            raise

    srv.route("POST", CHAT, send)
    return cut


def test_a_client_that_hangs_up_frees_the_upstream_and_the_slot(
    server, llama, serve, caplog
) -> None:
    cut = endless(server)
    gateway = serve(llama)
    fleet = gateway.gateway.fleet
    body = json.dumps(chat_body()).encode()
    with caplog.at_level(logging.INFO, "provider_agent.wsgi"):
        with socket.create_connection(("127.0.0.1", gateway.port)) as client:
            client.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            assert b"200 OK" in client.recv(65536)
            assert fleet.in_flight == 1
        assert eventually(lambda: fleet.in_flight == 0, 5)
        assert cut.wait(5), "the engine's connection was never closed"
    assert any("client left" in r.getMessage() for r in caplog.records)


def test_a_body_closed_before_its_first_chunk_frees_the_slot(server, llama) -> None:
    from provider_agent.backend import Job
    from provider_agent.wsgi import StreamBody

    fakes.held(server)
    with Fleet([llama]) as fleet:
        stream = fleet.execute(Job.new("tiny", chat_body()))
        assert fleet.in_flight == 1
        StreamBody(stream).close()  # what a WSGI server does on a hang-up
        assert fleet.in_flight == 0
        assert stream.result is None


# -- make_app, for servers that take a factory --------------------------------------


def test_make_app_builds_a_gateway_from_the_config_it_is_named(
    server, tmp_path, monkeypatch
) -> None:
    from provider_agent.wsgi import make_app

    fakes.llamacpp(server)
    config = tmp_path / "agent.toml"
    config.write_text(f'[[backends]]\nkind = "llamacpp"\nurl = "{server.url}"\n')
    monkeypatch.setenv("PROVIDER_AGENT_CONFIG", str(config))
    monkeypatch.setenv("GW_TOKEN", TOKEN)
    gateway = make_app(auth_token_env="GW_TOKEN", deadline_ms=1234)
    try:
        assert gateway.requires_auth and gateway.deadline_ms == 1234
        assert [b.url for b in gateway.fleet.backends] == [server.url]
    finally:
        gateway.close()
    with pytest.raises(RuntimeError, match="closed"):
        gateway.fleet.start()  # the gateway owned its fleet
    monkeypatch.setenv("GW_TOKEN", "")
    with pytest.raises(ValueError, match="GW_TOKEN"):
        make_app(config, auth_token_env="GW_TOKEN")


def test_cancel_streams_ends_every_stream_with_a_cancelled_event(
    server, llama, serve
) -> None:
    release = fakes.held(server)
    gateway = serve(llama)  # a fleet the gateway does not own: still its streams
    with gateway.post(CHAT, chat_body(), stream=True) as reply:
        chunks = reply.iter_content(None)
        assert next(chunks) == fakes.openai_chunks()[0]
        gateway.gateway.cancel_streams()
        rest = b"".join(chunks)
    release.set()
    assert b'"code":"cancelled"' in rest
    assert eventually(lambda: gateway.gateway.fleet.in_flight == 0, 5)


def test_a_request_after_the_fleet_closed_is_503(server, llama, serve) -> None:
    gateway = serve(llama)
    assert gateway.get("/health").status_code == 200
    gateway.gateway.fleet.close()  # the server is shutting down
    for reply in (gateway.post(CHAT, chat_body()), gateway.get("/health")):
        assert reply.status_code == 503
        assert reply.headers["X-Provider-Agent-Error"] == "cancelled"
        assert "shutting down" in reply.json()["error"]["message"]


def test_head_gets_the_headers_without_a_body(server, llama, serve) -> None:
    gateway = serve(llama)
    for path in ("/health", CHAT):
        with socket.create_connection(("127.0.0.1", gateway.port)) as client:
            client.sendall(f"HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            client.settimeout(5)
            head = client.recv(65536)
            while b"\r\n\r\n" not in head:
                head += client.recv(65536)
            client.settimeout(0.3)
            try:
                after = client.recv(65536)
            except socket.timeout:
                after = b""
        assert b"Content-Length: " in head
        assert head.endswith(b"\r\n\r\n") and after == b"", (path, head, after)


def test_json_nested_too_deeply_is_a_400(server, llama, serve) -> None:
    gateway = serve(llama)
    reply = gateway.post(CHAT, b"[" * 200_000)
    assert reply.status_code == 400
    assert reply.headers["X-Provider-Agent-Error"] == "invalid_json"


@pytest.mark.parametrize("deadline", [0, -5, 1.5, True])
def test_a_bad_deadline_is_refused_at_construction(llama, deadline) -> None:
    with pytest.raises((TypeError, ValueError), match="deadline_ms"):
        Gateway(Fleet([llama]), deadline_ms=deadline)


def test_cancel_streams_reaches_a_job_still_waiting_for_headers(
    server, llama, serve
) -> None:
    release = threading.Event()

    def late(reply: Reply) -> None:
        release.wait(10)
        fakes.chat(server)  # (unused: the job is gone by then)

    server.route("POST", CHAT, late)
    gateway = serve(llama)
    fleet = gateway.gateway.fleet
    answer: List[requests.Response] = []
    client = threading.Thread(
        target=lambda: answer.append(gateway.post(CHAT, chat_body()))
    )
    client.start()
    assert eventually(lambda: fleet.in_flight == 1, 5)
    gateway.gateway.cancel_streams()
    client.join(5)
    release.set()
    (reply,) = answer
    assert reply.status_code == 503
    assert reply.headers["X-Provider-Agent-Error"] == "cancelled"
    assert fleet.in_flight == 0
    again = gateway.post(CHAT, chat_body())  # a stopping gateway takes no more
    assert (again.status_code, again.json()["error"]["code"]) == (503, "cancelled")


def test_a_chunked_body_without_a_length_is_read_up_to_the_limit(llama) -> None:
    import io

    gateway = Gateway(Fleet([llama]), max_body_bytes=100)
    statuses: List[str] = []
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": CHAT,
        "wsgi.input": io.BytesIO(b"x" * 500),
        "wsgi.input_terminated": True,  # gunicorn's and werkzeug's chunked bodies
    }
    body = b"".join(gateway(environ, lambda status, headers: statuses.append(status)))
    assert statuses == ["413 Content Too Large"]
    assert b"100 bytes" in body
    environ["wsgi.input"] = io.BytesIO(b"[1]")
    body = b"".join(gateway(environ, lambda status, headers: statuses.append(status)))
    assert statuses[-1] == "400 Bad Request" and b"JSON object" in body
