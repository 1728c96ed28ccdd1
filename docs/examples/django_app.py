"""A one-file Django app that serves a provider_agent fleet to OpenAI and
Anthropic clients.

Its own views relay ``POST /v1/chat/completions`` (OpenAI) and ``POST /v1/messages``
(Anthropic) through the fleet, and the ready-made gateway is mounted under
``/fleet`` for ``GET /fleet/health`` and ``GET /fleet/v1/models``. The backends
come from the ``agent.toml`` that ``$PROVIDER_AGENT_CONFIG`` names (else
``./agent.toml``). Serve it with a threaded WSGI server, one thread per stream::

    pip install provider-agent django waitress gunicorn
    waitress-serve --listen 127.0.0.1:8000 --threads 12 django_app:application
    gunicorn -k gthread --threads 12 --bind 127.0.0.1:8000 django_app:application

Each stream holds a server thread for as long as it lasts: give the server the
fleet's ``max_concurrent`` (8 by default) plus a few for health checks. A client
then points its SDK at ``http://127.0.0.1:8000/v1`` (OpenAI) or
``http://127.0.0.1:8000`` (Anthropic). There is no authentication here: put your
own in front of it before you listen on anything but 127.0.0.1. In a project of
your own, the settings go in settings.py and the views in an app's views.py.
"""

import logging
import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application
from django.http import HttpResponse, StreamingHttpResponse
from django.urls import path
from django.views.decorators.http import require_POST

from provider_agent.backend import BackendError, WireFormat
from provider_agent.fleet import Fleet
from provider_agent.wsgi import (
    DEFAULT_MAX_BODY_BYTES,
    STREAM_HEADERS,
    Gateway,
    RequestError,
    StreamBody,
    error_reply,
    job_from_body,
)

logging.basicConfig(level=logging.INFO)

hosts = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost")
settings.configure(
    DEBUG=False,
    SECRET_KEY=os.environ.get("DJANGO_SECRET_KEY", "dev-only-not-a-secret"),
    ALLOWED_HOSTS=hosts.split(","),
    ROOT_URLCONF=__name__,
    # No database, no sessions, no CSRF middleware: the clients are SDKs sending
    # JSON, not browsers sending forms. CommonMiddleware checks ALLOWED_HOSTS.
    INSTALLED_APPS=[],
    MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
    DATA_UPLOAD_MAX_MEMORY_SIZE=DEFAULT_MAX_BODY_BYTES,  # larger bodies: a 400
)

# One fleet for the whole process, built at import. It connects to nothing yet:
# its health monitor and its connections start in each worker process, on the
# first request, so this is safe before a server forks (gunicorn --preload).
fleet = Fleet.from_config(os.environ.get("PROVIDER_AGENT_CONFIG", "agent.toml"))


def error_response(error):
    """An error as a response in the client's format, which its SDK raises on."""
    return HttpResponse(error.body, status=error.status, headers=dict(error.headers))


def relay(request, wire_format):
    """Run the request's body as a job on the fleet; stream back what it sends."""
    try:
        # The body checked as the gateway checks it: JSON, an object, a
        # "model" string and "stream": true, else a 400 saying what is wrong.
        job = job_from_body(request.body, wire_format)
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
    return StreamingHttpResponse(StreamBody(stream), headers=dict(STREAM_HEADERS))


@require_POST
def chat_completions(request):
    return relay(request, WireFormat.OPENAI)


@require_POST
def messages(request):
    return relay(request, WireFormat.ANTHROPIC)


urlpatterns = [
    path("v1/chat/completions", chat_completions),
    path("v1/messages", messages),
]


def mount(prefix, inner, outer):
    """A WSGI app that sends the paths under ``prefix`` to ``inner`` (which sees
    them without the prefix) and every other path to ``outer``."""

    def dispatch(environ, start_response):
        path_info = environ.get("PATH_INFO", "")
        if path_info == prefix or path_info.startswith(prefix + "/"):
            environ = dict(environ)
            environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + prefix
            environ["PATH_INFO"] = path_info[len(prefix) :]
            return inner(environ, start_response)
        return outer(environ, start_response)

    return dispatch


# The ready-made gateway under /fleet: /fleet/health, /fleet/v1/models (and its
# own job routes). It shares the views' fleet, so /fleet/health shows their jobs.
application = mount("/fleet", Gateway(fleet), get_wsgi_application())
