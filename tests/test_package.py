"""The top-level package: its public names, and what importing it costs."""

from __future__ import annotations

import pytest

import provider_agent
import provider_agent.fleet as fleet_pkg

from .processes import output_of


def test_every_public_name_resolves():
    for name in provider_agent.__all__:
        assert getattr(provider_agent, name) is not None, name
    assert set(provider_agent.__all__) <= set(dir(provider_agent))


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no_such_name"):
        provider_agent.no_such_name  # noqa: B018


def test_the_fleet_package_exports_what_it_lists():
    assert sorted(fleet_pkg.__all__) == sorted(set(fleet_pkg.__all__))
    for name in fleet_pkg.__all__:
        assert getattr(fleet_pkg, name) is not None, name


def test_importing_the_package_imports_no_layer_no_click_and_starts_no_thread():
    out = output_of(
        "import sys, threading, provider_agent;"
        "print(sorted(m for m in ('click', 'provider_agent.backend',"
        " 'provider_agent.fleet') if m in sys.modules), threading.active_count())"
    )
    assert out == "[] 1"


def test_the_backend_layer_imports_without_the_fleet():
    out = output_of(
        "import sys, provider_agent.backend;"
        "print('provider_agent.fleet' in sys.modules, 'click' in sys.modules)"
    )
    assert out == "False False"


def test_the_fleet_imports_without_click():
    code = (
        "import sys, provider_agent.backend; "
        "print(any(m.startswith('provider_agent.fleet') for m in sys.modules)); "
        "import provider_agent.fleet; print('click' in sys.modules)"
    )
    assert output_of(code).split() == ["False", "False"]


def test_using_the_fleet_names_imports_no_click_and_starts_no_thread():
    out = output_of(
        "import sys, threading;"
        "from provider_agent import Fleet, load_config, discover, poll_health;"
        "from provider_agent.backend import LlamaCppBackend;"
        "f = Fleet([LlamaCppBackend('http://127.0.0.1:9')]);"
        "print('click' in sys.modules, threading.active_count())"
    )
    assert out == "False 1"
