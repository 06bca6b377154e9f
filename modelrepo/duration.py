"""The one duration grammar of modelrepo: `modelrepo serve --interval` and `spec.interval`.

Accepted: Go's `time.ParseDuration` forms (a sequence of decimal numbers each with a unit,
`ns us µs ms s m h`, optional leading sign: `1m30s`, `500ms`, `1.5h`, `2h45m`) and a bare
number of seconds (`90`, `2.5`). Anything else is a ValueError naming the value: a typo in an
interval must never turn silently into some default. Imports nothing of the project.
"""

from __future__ import annotations

import math
import re

ACCEPTED = "a number of seconds (90, 2.5) or a Go duration (1m30s, 500ms, 1.5h, 2h45m)"

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_UNIT = "|".join(sorted(map(re.escape, _UNITS), key=len, reverse=True))  # "ms" before "m"
_PART = re.compile(rf"({_NUMBER})({_UNIT})")
_GO = re.compile(rf"[+-]?(?:{_NUMBER}(?:{_UNIT}))+")
_SECONDS = re.compile(rf"[+-]?{_NUMBER}")


def parse_duration(text: str) -> float:
    """Seconds in `text`; ValueError (naming the value and the accepted forms) if it is none."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a duration: expected {ACCEPTED}")
    if _SECONDS.fullmatch(text):
        seconds = float(text)
    elif _GO.fullmatch(text):
        sign = -1.0 if text.startswith("-") else 1.0
        seconds = sign * sum(float(n) * _UNITS[u] for n, u in _PART.findall(text.lstrip("+-")))
    else:
        raise ValueError(f"{text!r} is not a duration: expected {ACCEPTED}")
    if not math.isfinite(seconds):
        raise ValueError(f"{text!r} is too large a duration")
    return seconds
