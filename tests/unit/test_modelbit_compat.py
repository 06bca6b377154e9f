"""`import modelbit` in deployment code: modelrepo's stand-in, which never shadows a real package."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from modelrepo import modelbit_compat

SOURCE = '''
import modelbit, sys
from typing import *

table = modelbit.load_value("data/table.pkl")

def Lookup(key):
    modelbit.log_image({"key": key})
    return table[key]
'''


def run_python(code: str, cwd: Path, extra_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    """A fresh interpreter: sys.meta_path and sys.modules as a runtime process starts them."""
    path = [str(Path(modelbit_compat.__file__).resolve().parents[1])]
    if extra_path:
        path.insert(0, str(extra_path))
    env = {"PYTHONPATH": ":".join(path), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True)


def test_a_real_installed_modelbit_wins_over_the_stand_in(tmp_path):
    real = tmp_path / "site"
    (real / "modelbit").mkdir(parents=True)
    (real / "modelbit" / "__init__.py").write_text("WHO = 'the real modelbit'\n")
    code = (
        "from modelrepo.modelbit_compat import install; install(); install()\n"
        "import modelbit, sys\n"
        "print(getattr(modelbit, 'WHO', 'stand-in'), sum(type(f).__name__ == 'ModelbitFinder' for f in sys.meta_path))\n"
    )
    with_real = run_python(code, tmp_path, extra_path=real)
    assert with_real.stdout.split() == ["the", "real", "modelbit", "1"], with_real.stderr
    without = run_python(code, tmp_path)
    assert without.stdout.split() == ["stand-in", "1"], without.stderr


def test_without_install_there_is_no_modelbit(tmp_path):
    proc = run_python("import modelbit", tmp_path)
    assert "No module named 'modelbit'" in proc.stderr


def test_source_py_loads_values_relative_to_itself_and_logs_with_its_name(tmp_path, capsys):
    folder = tmp_path / "deployments" / "Lookup"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "table.pkl").write_bytes(pickle.dumps({"a": 1}))
    (folder / "source.py").write_text(SOURCE)
    (folder / "metadata.yaml").write_text(
        "schemaVersion: 2\nruntimeInfo:\n  mainFunction: Lookup\n  mainFunctionArgs: [key:Any, return:int]\n"
        f"  pythonVersion: '{sys.version_info.major}.{sys.version_info.minor}'\n"
    )
    modelbit_compat.install()
    from modelrepo.format import load_deployment, unload

    loaded = load_deployment(folder)
    try:
        assert loaded.function("a") == 1
        assert capsys.readouterr().err == "Lookup: log_image {'key': 'a'}\n"
    finally:
        unload(loaded)


def test_secrets_and_datasets_are_modelrepos(monkeypatch, tmp_path):
    """modelbit.get_secret / get_dataset are modelrepo's, with their clear errors."""
    from modelrepo.datasets import DatasetError
    from modelrepo.secrets import SecretNotFound

    monkeypatch.setenv("MODELREPO_SECRET_API_KEY", "k-123")
    assert modelbit_compat.get_secret("API_KEY") == "k-123"
    with pytest.raises(SecretNotFound, match="NOPE"):
        modelbit_compat.get_secret("NOPE")
    monkeypatch.setenv("MODELREPO_DATASETS_DIR", str(tmp_path))
    with pytest.raises(DatasetError, match="sales"):
        modelbit_compat.get_dataset("sales", filters={"region": ["EU"]})


def test_parse_arg_reads_json_and_keeps_plain_text():
    assert modelbit_compat.parseArg("5") == 5
    assert modelbit_compat.parseArg("[1, 2]") == [1, 2]
    assert modelbit_compat.parseArg('{"a": 1}') == {"a": 1}
    assert modelbit_compat.parseArg("hello") == "hello"


def test_an_unknown_modelbit_name_is_refused_by_name():
    with pytest.raises(AttributeError, match="modelbit.deploy is not available when modelrepo serves"):
        modelbit_compat.deploy  # noqa: B018
