"""hack/build-images.sh takes its Debian mirror from this machine's apt sources, never a fixed host."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "hack" / "build-images.sh"
HOSTS = (b"debian" + b".org", b"pypi" + b".org")  # split so that this file does not name them


def mirror(apt: Path, override: str | None = None) -> str:
    env = {"PATH": "/usr/bin:/bin", "APT_SOURCES": str(apt), "HOME": str(apt)}
    if override:
        env["DEBIAN_MIRROR"] = override
    proc = subprocess.run(
        ["bash", "-c", f'source "{SCRIPT}"; printf %s "$DEBIAN_MIRROR"'],
        env=env, capture_output=True, text=True, check=True,
    )
    return proc.stdout


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("sources.list", "# comment\ndeb [signed-by=/k.gpg arch=amd64] http://mirror.test/debian/ bookworm main\n"),
        ("sources.list.d/x.list", "deb http://mirror.test/debian-security bookworm-security main\n"
                                  "deb http://mirror.test/debian bookworm main\n"),
        ("sources.list.d/debian.sources",
         "Types: deb\nURIs: http://mirror.test/debian-security\nSuites: bookworm-security\nComponents: main\n\n"
         "Types: deb\n# http://other.test/\nURIs: http://mirror.test/debian\nSuites: bookworm bookworm-updates\n"
         "Components: main\n"),
    ],
)
def test_mirror_comes_from_apt_sources_in_both_formats(tmp_path, name, text):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / name).write_text(text)
    assert mirror(tmp_path) == "http://mirror.test/debian"


def test_debian_mirror_overrides_and_disabled_files_are_ignored(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "old.list.disabled").write_text("deb http://stale.test/debian bookworm main\n")
    assert mirror(tmp_path) == ""
    (tmp_path / "sources.list.d" / "a.list").write_text("deb http://mirror.test/debian bookworm main\n")
    assert mirror(tmp_path, override="http://mine.test/debian") == "http://mine.test/debian"


def test_no_registry_or_mirror_host_is_named_in_the_repository():
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    named = [
        f for f in files
        if (ROOT / f).is_file() and any(h in (ROOT / f).read_bytes() for h in HOSTS)
    ]
    assert named == []
