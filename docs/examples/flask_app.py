"""A Flask app that serves a provider_agent fleet to OpenAI and Anthropic clients.

Its own views relay ``POST /v1/chat/completions`` (OpenAI) and ``POST /v1/messages``
(Anthropic) through the fleet, and the ready-made gateway is mounted under
``/fleet`` for ``GET /fleet/health`` and ``GET /fleet/v1/models``. The backends
come from the ``agent.toml`` that ``$PROVIDER_AGENT_CONFIG`` names (else
``./agent.toml``). Serve it with a threaded WSGI server, one thread per stream::

    pip install provider-agent flask waitress gunicorn
    waitress-serve --listen 127.0.0.1:8000 --threads 12 flask_app:app
    gunicorn -k gthread --threads 12 --bind 127.0.0.1:8000 flask_app:app

Each stream holds a server thread for as long as it lasts: give the server the
fleet's ``max_concurrent`` (8 by default) plus a few for health checks. A client
then points its SDK at ``http://127.0.0.1:8000/v1`` (OpenAI) or
``http://127.0.0.1:8000`` (Anthropic). There is no authentication here: put your
own in front of it before you listen on anything but 127.0.0.1.
"""

import logging
import os

from flask import Flask, Response, request
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from provider_agent.backend import BackendError, WireFormat
from provider_agent.fleet import Fleet
from provider_agent.wsgi import (
    DEFAULT_MAX_BODY_BYTES,
    STREAM_HEADERS,
    ErrorReply,
    Gateway,
    RequestError,
    StreamBody,
    error_reply,
    job_from_body,
)

logging.basicConfig(level=logging.INFO)

# One fleet for the whole process, built at import. It connects to nothing yet:
# its health monitor and its connections start in each worker process, on the
# first request, so this is safe before a server forks (gunicorn --preload).
fleet = Fleet.from_config(os.environ.get("PROVIDER_AGENT_CONFIG", "agent.toml"))

app = Flask(__name__)
app.config["MAX_CONTENT_LENGTH"] = DEFAULT_MAX_BODY_BYTES  # larger bodies: a 413


def error_response(error: ErrorReply) -> Response:
    """An error as a response in the client's format, which its SDK raises on."""
    return Response(error.body, error.status, error.headers)


def relay(wire_format: WireFormat) -> Response:
    """Run the request's body as a job on the fleet; stream back what it sends."""
    try:
        # The body checked as the gateway checks it: JSON, an object, a
        # "model" string and "stream": true, else a 400 saying what is wrong.
        job = job_from_body(request.get_data(), wire_format)
        # Returns once a backend has answered; an error until then (no backend
        # serves the model, all are full or down) becomes a status and body.
        stream = fleet.execute(job)
    except RequestError as exc:
        return error_response(exc.reply)
    except BackendError as exc:
        return error_response(error_reply(exc, wire_format))
    # The upstream's bytes, relayed as they arrive. An error after the first
    # byte ends the stream with an error event. When the reply ends, or the
    # client hangs up, the server closes the response, which closes the
    # StreamBody: the engine stops generating and the job's slot is freed.
    return Response(StreamBody(stream), headers=STREAM_HEADERS)


@app.post("/v1/chat/completions")
def chat_completions() -> Response:
    return relay(WireFormat.OPENAI)


@app.post("/v1/messages")
def messages() -> Response:
    return relay(WireFormat.ANTHROPIC)


# The ready-made gateway under /fleet: /fleet/health, /fleet/v1/models (and its
# own job routes). It shares the views' fleet, so /fleet/health shows their jobs.
app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {"/fleet": Gateway(fleet)})
