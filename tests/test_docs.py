"""The docs stay true: links resolve, code parses, the README opens with its two
commands, and the error tree the docs draw is the one the code has."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import provider_agent.backend.errors as errors

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#]+)(#[^)]*)?\)")
PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
SNIPPET = re.compile(r'^--8<-- "([^"]+)"$', re.MULTILINE)


def expanded(text: str) -> str:
    """``text`` with each included file in place, as mkdocs renders it."""
    return SNIPPET.sub(lambda m: (ROOT / m.group(1)).read_text(), text)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page: Path) -> None:
    for target, _ in LINK.findall(page.read_text()):
        if "://" not in target:
            assert (page.parent / target).exists(), f"{page.name} -> {target}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_python_examples_parse(page: Path) -> None:
    for block in PYTHON_BLOCK.findall(expanded(page.read_text())):
        ast.parse(block)


def test_the_readme_opens_with_the_two_commands() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    commands = [line.strip() for line in lines[:5] if line.startswith("    ")]
    assert commands == [
        "python3 -m pip install -e . && provider-agent scan",
        "python3 -m pip install tox && tox",
    ]
    assert "tox" in (ROOT / ".ci" / "run").read_text().splitlines()[-1]


def tree(text: str) -> list:
    return re.findall(r"[├└]── (\w+Error)", text)


def test_the_documented_error_tree_is_the_real_one() -> None:
    documented = tree(errors.__doc__ or "")
    assert documented == tree((ROOT / "docs" / "streaming.md").read_text())
    real = [
        name
        for name in errors.__all__
        if name != "BackendError" and issubclass(getattr(errors, name), Exception)
    ]
    assert sorted(documented) == sorted(real)
    assert errors.ModelNotFoundError.__bases__ == (errors.BadStatusError,)


def test_the_documented_error_codes_are_the_real_ones() -> None:
    from provider_agent.fleet import CODES

    text = (ROOT / "docs" / "fleet.md").read_text()
    table = text.split("## Error codes", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"^\| `(\w+)` \|", table, re.MULTILINE)
    assert documented == list(CODES)


def test_the_web_apps_page_includes_both_examples() -> None:
    text = (ROOT / "docs" / "web-apps.md").read_text()
    included = SNIPPET.findall(text)
    assert included == ["docs/examples/flask_app.py", "docs/examples/django_app.py"]
    assert all((ROOT / path).is_file() for path in included)


def test_the_documented_statuses_are_the_real_ones() -> None:
    from provider_agent.wsgi import STATUS_BY_CODE

    text = (ROOT / "docs" / "web-apps.md").read_text()
    table = text.split("## Errors", 1)[1].split("\n\n| request", 1)[0]
    documented = dict(re.findall(r"^\| `(\w+)` \| (\d+)", table, re.MULTILINE))
    assert {code: int(status) for code, status in documented.items()} == STATUS_BY_CODE
