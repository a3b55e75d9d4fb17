"""Kubernetes-style durations ("30s", "5m", "1h30m", "7d") as seconds."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
# The same grammar as a regular expression, so the CRD can check it server-side.
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h|d|w))+$"


def parse_duration(text: str) -> float:
    """Seconds in ``text``; raises ValueError with the offending text."""
    text = text.strip()
    pos, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(
            f"{text!r} is not a duration; use a number with a unit, like 30s, 5m, 1h30m or 7d"
        )
    return total


def format_duration(seconds: float) -> str:
    """The shortest exact rendering of ``seconds`` ("90s" -> "1m30s")."""
    rest = round(seconds)
    if rest == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
