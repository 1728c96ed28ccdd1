"""Health for monitoring systems: rows, the exit code, Nagios and Prometheus.

``health_rows`` turns a scan into one ``HealthRow`` per backend. ``exit_code``
follows the Nagios plugin convention monitoring systems rely on: 0 (OK) every
backend up, 1 (WARNING) some down, 2 (CRITICAL) all down, 3 (UNKNOWN) nothing to
check. ``nagios_line`` is the plugin's one line of output with its perfdata
(https://nagios-plugins.org/doc/guidelines.html#AEN200); ``prometheus_text`` is the
node exporter's textfile-collector format, which ``write_atomic`` puts in place
so that the collector never reads half a file.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..scan import ScanResult

__all__ = [
    "CRITICAL",
    "HealthRow",
    "OK",
    "UNKNOWN",
    "WARNING",
    "exit_code",
    "health_rows",
    "nagios_line",
    "nagios_unknown",
    "prometheus_text",
    "write_atomic",
]

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
_STATE = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}
_PREFIX = "provider_agent"


@dataclass(frozen=True)
class HealthRow:
    """One backend's health. ``models`` is the ids it lists (None when it was
    not listed); ``error`` why it is down, or why its models are unknown."""

    backend: str
    kind: str
    url: str
    status: str  # "up" or "down"
    latency_ms: Optional[int]
    models: Optional[Tuple[str, ...]]
    error: Optional[str]

    @property
    def up(self) -> bool:
        return self.status == "up"

    def to_dict(self) -> Dict[str, Any]:
        """The row's JSON form: the fields as named, ``models`` a list or null."""
        data = asdict(self)
        data["models"] = list(self.models) if self.models is not None else None
        return data


def health_rows(results: Sequence[ScanResult]) -> List[HealthRow]:
    """A row per scanned backend, in order."""
    rows = []
    for r in results:
        up = r.health.reachable
        listed = up and r.error is None
        rows.append(
            HealthRow(
                r.id,
                r.kind,
                r.url,
                "up" if up else "down",
                r.health.latency_ms,
                tuple(m.model_id for m in r.models) if listed else None,
                r.health.last_error if not up else r.error,
            )
        )
    return rows


def exit_code(rows: Sequence[HealthRow]) -> int:
    """0 all up, 1 some down, 2 all down, 3 no backend at all."""
    if not rows:
        return UNKNOWN
    up = sum(row.up for row in rows)
    if up == len(rows):
        return OK
    return WARNING if up else CRITICAL


def nagios_line(rows: Sequence[HealthRow]) -> str:
    """``PROVIDER-AGENT <STATE> - <summary> | <perfdata>``, one line."""
    code = exit_code(rows)
    up = sum(row.up for row in rows)
    total = len(rows)
    summary = f"{up}/{total} backends up"
    down = [f"{row.backend} ({row.error or 'down'})" for row in rows if not row.up]
    if down:
        summary += "; down: " + ", ".join(down)
    perf = [f"up={up};;;0;{total}"]
    for row in rows:
        value = f"{row.latency_ms}ms" if row.up and row.latency_ms is not None else "U"
        perf.append(f"{_perf_label(row.backend)}={value};;;0")
    text = f"PROVIDER-AGENT {_STATE[code]} - {summary} | {' '.join(perf)}"
    return " ".join(text.split())  # one line, whatever an error said


def nagios_unknown(reason: str) -> str:
    """The plugin's line when there is nothing it can check (exit 3)."""
    return " ".join(f"PROVIDER-AGENT UNKNOWN - {reason}".split())


def _perf_label(name: str) -> str:
    # Quoted, since ids hold ':' and '/'; '=' and quotes cannot be in a label.
    return "'" + name.replace("'", "_").replace("=", "_") + "'"


def prometheus_text(rows: Sequence[HealthRow], timestamp: float) -> str:
    """The rows as Prometheus text exposition (textfile-collector format)."""
    metrics = [
        ("backend_up", "Whether the backend answered its health probe.", "up"),
        ("backend_latency_seconds", "How long its health probe took.", "latency"),
        ("backend_models", "How many models the backend lists.", "models"),
    ]
    lines: List[str] = []
    for name, help_text, field in metrics:
        lines += [
            f"# HELP {_PREFIX}_{name} {help_text}",
            f"# TYPE {_PREFIX}_{name} gauge",
        ]
        for row in rows:
            value = _metric(row, field)
            if value is not None:
                lines.append(f"{_PREFIX}_{name}{{{_labels(row)}}} {value}")
    name = f"{_PREFIX}_health_checked_timestamp_seconds"
    lines += [
        f"# HELP {name} When the backends were last probed.",
        f"# TYPE {name} gauge",
    ]
    lines.append(f"{name} {timestamp:.3f}")
    return "\n".join(lines) + "\n"


def _metric(row: HealthRow, field: str) -> Optional[str]:
    if field == "up":
        return "1" if row.up else "0"
    if field == "latency":
        if not row.up or row.latency_ms is None:
            return None
        return f"{row.latency_ms / 1000:g}"
    return str(len(row.models)) if row.models is not None else None


def _labels(row: HealthRow) -> str:
    pairs = (("backend", row.backend), ("kind", row.kind), ("url", row.url))
    return ",".join(f'{key}="{_escape(value)}"' for key, value in pairs)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def write_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temp file in the same directory and
    a rename, so a reader sees the old file or the new one, never a part.
    Raises ``OSError``."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, temp = tempfile.mkstemp(prefix=".provider-agent-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temp, 0o644)  # the collector often runs as another user
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise
