"""Listings as a terminal shows them, or as a pipe wants them.

A terminal gets a header and aligned columns, numbers with their unit, ``-`` for
an unknown value, and colour unless ``NO_COLOR`` is set (https://no-color.org).
A pipe gets tab-separated rows and nothing else: no header, raw numbers, an empty
field for an unknown value, never an escape code. ``PROVIDER_AGENT_TERMINAL=1``
(or ``0``) forces one way or the other, for a test or a ``watch`` wrapper.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import IO, Any, Mapping, Optional, Sequence

__all__ = [
    "Column",
    "TERMINAL_ENV",
    "printable",
    "render",
    "use_colour",
    "use_terminal",
]

#: Set to 1 to get the terminal's output in a pipe, 0 for the pipe's on a terminal.
TERMINAL_ENV = "PROVIDER_AGENT_TERMINAL"

#: Control characters but tab and newline: a terminal would act on them.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_COLOURS = {"up": "\x1b[32m", "down": "\x1b[31m"}
_RESET = "\x1b[0m"


@dataclass(frozen=True)
class Column:
    """A column's title and, for a number, the unit a terminal shows after it."""

    title: str
    unit: Optional[str] = None


def use_terminal(stream: IO[Any], environ: Mapping[str, str]) -> bool:
    """Whether output to ``stream`` is for a person at a terminal."""
    forced = environ.get(TERMINAL_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or odd stream
        return False


def use_colour(terminal: bool, environ: Mapping[str, str]) -> bool:
    """Colour for a terminal, unless ``NO_COLOR`` is set to anything."""
    return terminal and not environ.get("NO_COLOR")


def render(
    columns: Sequence[Column],
    rows: Sequence[Sequence[Any]],
    *,
    terminal: bool,
    colour: bool = False,
) -> str:
    """The rows as text, one line each, with a newline after each."""
    if not terminal:
        return "".join("\t".join(_raw(cell) for cell in row) + "\n" for row in rows)
    table = [[c.title for c in columns]]
    table += [[_shown(cell, col) for cell, col in zip(row, columns)] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    lines = []
    for line in table:
        cells = []
        for text, width in zip(line, widths):
            padded = text.ljust(width)
            if colour and text in _COLOURS:
                padded = f"{_COLOURS[text]}{text}{_RESET}{padded[len(text) :]}"
            cells.append(padded)
        lines.append("  ".join(cells).rstrip() + "\n")
    return "".join(lines)


def printable(text: str) -> str:
    """``text`` safe for a terminal: each control character but tab and newline
    in caret notation (``^[`` for ESC), as ``cat -v`` shows it, so a model's
    reply or a server's message cannot move the cursor or change colours."""
    return _CONTROL.sub(_caret, text)


def _caret(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"^{chr(code ^ 0x40)}" if code < 0x80 else f"\\x{code:02x}"


def _raw(cell: Any) -> str:
    if cell is None:
        return ""
    if isinstance(cell, bool):
        return "true" if cell else "false"
    return " ".join(str(cell).split())  # no tab or newline inside a field


def _shown(cell: Any, column: Column) -> str:
    if cell is None or cell == "":
        return "-"
    if isinstance(cell, bool):
        return "yes" if cell else "no"
    if isinstance(cell, (int, float)) and column.unit:
        return f"{cell} {column.unit}"
    return printable(" ".join(str(cell).split()))
