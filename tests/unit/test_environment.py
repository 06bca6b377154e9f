"""A deployment's environment: its identity (hash) and whether a base image already satisfies it."""

from __future__ import annotations

import pytest

from modelrepo.format.environment import (
    Environment,
    environment_hash,
    environment_of_folder,
    parse_package_list,
    unmet_by_base,
)

BASE = parse_package_list("numpy==1.26.4\nscikit-learn==1.5.2\nPyYAML==6.0.2\nmodelrepo @ file:///src\n")


def test_package_list_is_read_from_pip_freeze_with_canonical_names():
    assert BASE == {"numpy": "1.26.4", "scikit-learn": "1.5.2", "pyyaml": "6.0.2"}


def test_comments_blank_lines_and_package_order_do_not_change_the_identity():
    a = Environment.of("3.11", "numpy==1.26.4\n\n# pinned\npandas>=2  # why\n", ["libgomp1", "ffmpeg"], ["gpu"])
    b = Environment.of("3.11", "numpy==1.26.4\npandas>=2\n", ["ffmpeg", "libgomp1", "ffmpeg"], ["gpu"])
    assert a == b and environment_hash(a) == environment_hash(b)


@pytest.mark.parametrize("other", [
    Environment.of("3.9", "numpy==1.26.4\n"),
    Environment.of("3.11", "numpy==1.26.3\n"),
    Environment.of("3.11", "numpy==1.26.4\n", ["git"]),
    Environment.of("3.11", "numpy==1.26.4\n", capabilities=["gpu"]),
])
def test_each_input_changes_the_identity(other):
    assert environment_hash(other) != environment_hash(Environment.of("3.11", "numpy==1.26.4\n"))


def test_requirements_the_base_image_pins_need_no_build():
    env = Environment.of("3.11", "numpy==1.26.4\nscikit-learn>=1.4,<2\npyyaml\n"
                                 "tomli; python_version < '3.11'\n")
    assert unmet_by_base(env, "3.11", BASE) == []
    assert unmet_by_base(Environment.of("3.11"), "3.11", BASE) == []


@pytest.mark.parametrize(("env", "reason"), [
    (Environment.of("3.9", "numpy==1.26.4"), "pythonVersion 3.9"),
    (Environment.of("3.11", "numpy==1.26.4", ["libgomp1"]), "systemPackages libgomp1"),
    (Environment.of("3.11", "numpy==2.0.0"), "numpy==2.0.0 (base image has 1.26.4)"),
    (Environment.of("3.11", "six==1.16.0"), "six==1.16.0 (not in the base image)"),
    (Environment.of("3.11", "--extra-index-url https://x.test/simple\nnumpy==1.26.4"), "pip option --extra-index-url"),
    (Environment.of("3.11", "numpy[dev]==1.26.4"), "numpy[dev]==1.26.4 (URL or extras)"),
    (Environment.of("3.11", "git+https://x.test/r.git"), "git+https://x.test/r.git (not a plain requirement)"),
])
def test_anything_the_base_cannot_prove_needs_a_build(env, reason):
    assert any(r.startswith(reason) for r in unmet_by_base(env, "3.11", BASE))


def test_gpu_capability():
    assert Environment.of("3.11").gpu is None
    assert Environment.of("3.11", capabilities=["gpu"]).gpu == ""
    assert Environment.of("3.11", capabilities=["gpu=T4"]).gpu == "T4"


def test_environment_of_a_folder(tmp_path):
    (tmp_path / "metadata.yaml").write_text(
        "schemaVersion: 2\nruntimeInfo:\n  mainFunction: f\n  pythonVersion: '3.9'\n"
        "  systemPackages: [ffmpeg]\n  capabilities: ['gpu=T4']\n"
    )
    (tmp_path / "requirements.txt").write_text("six==1.16.0\n")
    assert environment_of_folder(tmp_path) == Environment("3.9", ("six==1.16.0",), ("ffmpeg",), ("gpu=T4",))
    (tmp_path / "requirements.txt").unlink()
    assert environment_of_folder(tmp_path).requirements == ()
