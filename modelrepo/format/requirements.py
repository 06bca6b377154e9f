"""requirements.txt of a deployment: which lines pip will be given, and which are refused.

Real repositories use pins, direct URLs (wheels, `git+https://...`), `name @ url` and index
options (`--extra-index-url=...`); all of these are accepted. Lines that would make pip read
other files or change where it installs (`-r`, `-c`, `-e`, `--target`, ...) are refused,
naming the line.
"""

from __future__ import annotations

import re

from packaging.requirements import InvalidRequirement, Requirement

# pip options a requirements file may carry, with or without `=value`.
ALLOWED_OPTIONS = frozenset({
    "--index-url", "-i", "--extra-index-url", "--find-links", "-f", "--trusted-host",
    "--pre", "--prefer-binary", "--only-binary", "--no-binary",
})
_URL = re.compile(r"^(git\+)?[a-z][a-z0-9+.-]*://\S+$", re.IGNORECASE)


def requirement_lines(text: str) -> list[tuple[int, str]]:
    """(line number, requirement text) of every non-empty, non-comment line."""
    lines = []
    for number, line in enumerate(text.splitlines(), 1):
        content = line.split(" #", 1)[0].strip()
        if content and not content.startswith("#"):
            lines.append((number, content))
    return lines


def requirement_problems(text: str) -> list[str]:
    """`line N: ...` for every line pip must not be given."""
    problems = []
    for number, content in requirement_lines(text):
        if content.startswith("-"):
            option = content.split("=", 1)[0].split(None, 1)[0]
            if option not in ALLOWED_OPTIONS:
                problems.append(
                    f"line {number}: pip option {option} is not allowed here "
                    f"(allowed: {', '.join(sorted(ALLOWED_OPTIONS))})"
                )
            continue
        if _URL.match(content):
            continue
        try:
            requirement = Requirement(content)
        except InvalidRequirement as exc:
            reason = str(exc).splitlines()[0] if str(exc) else "invalid"
            problems.append(f"line {number}: {content!r} is not a requirement: {reason}")
            continue
        # packaging before 26.4 (the last one on Python 3.9 is 26.3) reads `numpy===` as `===""`
        empty = [str(spec) for spec in requirement.specifier if not spec.version]
        if empty:
            problems.append(f"line {number}: {content!r} is not a requirement: {empty[0]} names no version")
    return problems
