"""modelrepo.get_secret: mounted Secret directories, a secrets file, the environment."""

from __future__ import annotations

import pytest

import modelrepo
from modelrepo import secrets
from modelrepo.secrets import SecretConfigError, SecretNotFound, get_secret


@pytest.fixture(autouse=True)
def clean(monkeypatch):
    for var in (secrets.DIRS_ENV, secrets.FILE_ENV, "MODELREPO_SECRET_API_KEY"):
        monkeypatch.delenv(var, raising=False)


def test_the_first_place_that_has_it_wins(tmp_path, monkeypatch):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    (second / "API_KEY").write_text("from-b\n")
    monkeypatch.setenv(secrets.DIRS_ENV, f"{first}:{second}")
    monkeypatch.setenv("MODELREPO_SECRET_API_KEY", "from-env")
    assert modelrepo.get_secret("API_KEY") == "from-b"  # one trailing newline dropped
    (first / "API_KEY").write_text("from-a")
    assert get_secret("API_KEY") == "from-a"
    monkeypatch.delenv(secrets.DIRS_ENV)
    assert get_secret("API_KEY") == "from-env"
    (tmp_path / "s.yaml").write_text("API_KEY: from-file\nPORT: 5432\n")
    monkeypatch.setenv(secrets.FILE_ENV, str(tmp_path / "s.yaml"))
    assert get_secret("API_KEY") == "from-file"
    assert get_secret("PORT") == "5432"


def test_a_missing_secret_names_itself_and_every_place_looked_in(tmp_path, monkeypatch):
    monkeypatch.setenv(secrets.DIRS_ENV, str(tmp_path))
    (tmp_path / "s.yaml").write_text("OTHER: hunter2\n")
    monkeypatch.setenv(secrets.FILE_ENV, str(tmp_path / "s.yaml"))
    with pytest.raises(SecretNotFound) as err:
        get_secret("API_KEY")
    assert str(err.value) == (f"no secret 'API_KEY': looked in directory {tmp_path}, file {tmp_path / 's.yaml'} "
                              "(MODELREPO_SECRETS_FILE), environment variable MODELREPO_SECRET_API_KEY")
    assert "hunter2" not in str(err.value)
    with pytest.raises(SecretNotFound, match="'../x' is not a secret name"):
        get_secret("../x")


def test_a_broken_secrets_file_is_named_without_its_content(tmp_path, monkeypatch):
    (tmp_path / "s.yaml").write_text("API_KEY: [hunter2\n")
    monkeypatch.setenv(secrets.FILE_ENV, str(tmp_path / "s.yaml"))
    with pytest.raises(SecretConfigError) as err:
        get_secret("API_KEY")
    assert str(err.value) == f"secrets file {tmp_path / 's.yaml'} is not valid YAML"
    (tmp_path / "s.yaml").write_text("- hunter2\n")
    with pytest.raises(SecretConfigError, match="must be a mapping of names to values"):
        get_secret("API_KEY")
    monkeypatch.setenv(secrets.FILE_ENV, str(tmp_path / "none.yaml"))
    with pytest.raises(SecretConfigError, match="cannot read secrets file .*none.yaml: No such file"):
        get_secret("API_KEY")


def test_public_names():
    assert {"get_secret", "get_dataset"} <= set(modelrepo.__all__)
    assert modelrepo.get_dataset is __import__("modelrepo.datasets").datasets.get_dataset
