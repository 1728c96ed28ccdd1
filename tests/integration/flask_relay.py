"""A sync web app relaying jobs: Flask streaming ``execute()``'s iterator.

This is how a Flask (or any WSGI) app puts provider_agent behind its own
OpenAI- or Anthropic-compatible routes. Errors raised before the first byte
become an HTTP error reply; the stream itself is passed through untouched.
The app keeps a copy of every body it relayed, for the tests to compare.
"""

from __future__ import annotations

import threading
from typing import Iterator, List

from flask import Flask, Response, jsonify, request
from werkzeug.serving import make_server

from provider_agent.backend import Backend, BackendError, Job, WireFormat
from provider_agent.wsgi import StreamBody, error_reply


def create_app(backend: Backend) -> Flask:
    app = Flask(__name__)
    relayed: List[bytearray] = []
    app.config["RELAYED"] = relayed

    def relay(wire_format: WireFormat) -> Response:
        body = request.get_json()
        job = Job.new(str(body.get("model", "")), body, wire_format)
        try:
            stream = backend.execute(job)
        except BackendError as exc:
            reply = error_reply(exc, wire_format)
            return Response(reply.body, reply.status, reply.headers)
        except ValueError as exc:  # e.g. "stream": false, which a relay cannot serve
            return jsonify(error={"message": str(exc)}), 400
        copy = bytearray()
        relayed.append(copy)
        body = StreamBody(stream)

        def chunks() -> Iterator[bytes]:
            for chunk in body:
                copy.extend(chunk)
                yield chunk

        response = Response(chunks(), mimetype="text/event-stream")
        # Also when the client leaves before the first chunk, and the generator
        # never starts: the upstream stream is closed, the engine stops.
        response.call_on_close(body.close)
        return response

    app.add_url_rule(
        "/v1/chat/completions",
        "chat",
        lambda: relay(WireFormat.OPENAI),
        methods=["POST"],
    )
    app.add_url_rule(
        "/v1/messages",
        "messages",
        lambda: relay(WireFormat.ANTHROPIC),
        methods=["POST"],
    )
    return app


class Served:
    """The app served by werkzeug on a free 127.0.0.1 port, in a thread."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def relayed(self) -> List[bytes]:
        return [bytes(body) for body in self.app.config["RELAYED"]]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
