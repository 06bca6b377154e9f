"""Datasets against a real PostgreSQL: the file format, get_dataset, caching, read-only, errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from fixtures.runtime_server import commit_all, init_repo

from modelrepo import datasets
from modelrepo.datasets import DatasetError, get_dataset, prepare, sync_repository
from modelrepo.duration import parse_duration
from modelrepo.format import DeploymentError
from modelrepo.format.datasets import blob_id, parse_dataset, validate_datasets


@pytest.fixture(scope="module")
def shop(postgres):
    postgres.admin_sql(
        "DROP TABLE IF EXISTS customers; DROP ROLE IF EXISTS writer;"
        "CREATE TABLE customers (id int PRIMARY KEY, name text, segment text);"
        "INSERT INTO customers VALUES (1, 'Ann', 'gold'), (2, 'Bob', 'silver'), (3, 'Cid', 'gold');"
        # A role that MAY write: only the read-only transaction stops it.
        "CREATE ROLE writer LOGIN PASSWORD 'w'; GRANT ALL ON customers TO writer;"
        "GRANT USAGE ON SCHEMA public TO writer;"
    )
    return postgres


@pytest.fixture
def env(tmp_path, monkeypatch, shop):
    """An active datasets directory, warehouse `crm` = the reader, an empty result cache."""
    directory = tmp_path / "datasets"
    directory.mkdir()
    monkeypatch.setenv(datasets.DIR_ENV, str(directory))
    monkeypatch.setenv("MODELREPO_WAREHOUSE_CRM", shop.url())
    monkeypatch.delenv(datasets.CACHE_ENV, raising=False)
    monkeypatch.delenv(datasets.WAREHOUSES_DIR_ENV, raising=False)
    monkeypatch.delenv(datasets.WAREHOUSES_FILE_ENV, raising=False)
    monkeypatch.setattr(datasets, "_results", {})
    return directory


def write(directory: Path, name: str, query: str, warehouse: str = "crm", extra: str = "") -> None:
    (directory / f"{name}.yaml").write_text(f"query: {query}\nwarehouse: {warehouse}\nschemaVersion: 2\n{extra}")


# -- the file format -------------------------------------------------------------------------
def test_a_modelbit_dataset_file_parses():
    data = b"query: select * from newdb.sales\nwarehouse: snowflake_prod\nschemaVersion: 2\n"
    ds = parse_dataset("sales", data)
    assert (ds.query, ds.warehouse, ds.refresh_seconds) == ("select * from newdb.sales", "snowflake_prod", None)
    assert ds.blob == subprocess.run(["git", "hash-object", "--stdin"], input=data, capture_output=True,
                                     check=True).stdout.decode().strip()
    assert parse_dataset("s", data + b"refresh: 1m30s\n", parse_duration=parse_duration).refresh_seconds == 90
    assert parse_dataset("s", data + b"refreshSeconds: 600\n").refresh_seconds == 600


@pytest.mark.parametrize(("text", "problem"), [
    ("warehouse: w\nschemaVersion: 2\n", "query: must be a non-empty SQL string"),
    ("query: select 1\nschemaVersion: 2\n", "warehouse: must be a connection name"),
    ("query: select 1\nwarehouse: w\nschemaVersion: 1\n", "schemaVersion: must be 2, got 1"),
    ("query: select 1\nwarehouse: w\nschemaVersion: 2\nrefresh: soon\n", "refresh: 'soon' is not a duration"),
    ("query: select 1\nwarehouse: w\nschemaVersion: 2\nrefreshSeconds: -5\n", "refreshSeconds: must be a number of seconds above 0"),
    ("- a list\n", "must be a mapping"),
    ("query: [\n", "not valid YAML"),
])
def test_a_wrong_dataset_file_is_named_with_what_is_wrong(text, problem):
    with pytest.raises(DeploymentError) as err:
        parse_dataset("customers", text.encode(), parse_duration=parse_duration)
    assert err.value.path == "datasets/customers.yaml"
    assert problem in err.value.problem


def test_validate_checks_the_datasets_folder(tmp_path):
    repo = tmp_path / "repo"
    (repo / "deployments").mkdir(parents=True)
    (repo / "datasets").mkdir()
    write(repo / "datasets", "good", "select 1")
    (repo / "datasets" / "bad.yaml").write_text("query: select 1\nschemaVersion: 2\n")
    (repo / "datasets" / "notes.txt").write_text("hello")
    problems = {Path(p.path).name: p.problem for p in validate_datasets(repo, parse_duration)}
    assert set(problems) == {"bad.yaml", "notes.txt"}
    proc = subprocess.run([sys.executable, "-m", "modelrepo.cli", "validate", str(repo)],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert "datasets/bad.yaml: warehouse: must be a connection name" in proc.stdout
    assert "datasets/notes.txt: a dataset file must be <name>.yaml" in proc.stdout
    (repo / "datasets" / "bad.yaml").unlink()
    (repo / "datasets" / "notes.txt").unlink()
    proc = subprocess.run([sys.executable, "-m", "modelrepo.cli", "validate", str(repo)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


# -- get_dataset against PostgreSQL ------------------------------------------------------------
def test_get_dataset_returns_the_query_result_filtered(env):
    write(env, "customers", "select id, name, segment from customers order by id")
    frame = get_dataset("customers")
    assert frame.to_dict("records") == [
        {"id": 1, "name": "Ann", "segment": "gold"},
        {"id": 2, "name": "Bob", "segment": "silver"},
        {"id": 3, "name": "Cid", "segment": "gold"},
    ]
    assert get_dataset("customers", filters={"segment": ["gold"]})["name"].tolist() == ["Ann", "Cid"]
    assert get_dataset("customers", filters={"segment": ["gold"], "id": [3, 4]})["name"].tolist() == ["Cid"]
    with pytest.raises(DatasetError, match="no column 'nope' to filter on .*id, name, segment"):
        get_dataset("customers", filters={"nope": [1]})


def test_the_result_is_cached_per_version_of_the_file(env, shop):
    write(env, "customers", "select name from customers order by id")
    assert get_dataset("customers")["name"].tolist() == ["Ann", "Bob", "Cid"]
    shop.admin_sql("UPDATE customers SET name = 'Anna' WHERE id = 1")
    try:
        assert get_dataset("customers")["name"].tolist() == ["Ann", "Bob", "Cid"]  # cached
        write(env, "customers", "select name from customers where id < 3 order by id")  # a new version
        assert get_dataset("customers")["name"].tolist() == ["Anna", "Bob"]
    finally:
        shop.admin_sql("UPDATE customers SET name = 'Ann' WHERE id = 1")


def test_a_refresh_interval_runs_the_query_again(env, shop, monkeypatch):
    write(env, "customers", "select name from customers where id = 1", extra="refresh: 1h\n")
    clock = [1000.0]
    monkeypatch.setattr(datasets.time, "time", lambda: clock[0])
    assert get_dataset("customers")["name"].tolist() == ["Ann"]
    shop.admin_sql("UPDATE customers SET name = 'Anna' WHERE id = 1")
    try:
        clock[0] += 3599
        assert get_dataset("customers")["name"].tolist() == ["Ann"]
        clock[0] += 2
        assert get_dataset("customers")["name"].tolist() == ["Anna"]
    finally:
        shop.admin_sql("UPDATE customers SET name = 'Ann' WHERE id = 1")


def test_a_disk_cache_is_shared_with_other_processes(env, tmp_path, monkeypatch):
    monkeypatch.setenv(datasets.CACHE_ENV, str(tmp_path / "cache"))
    write(env, "customers", "select count(*) as n from customers")
    assert get_dataset("customers")["n"].tolist() == [3]
    blob = blob_id((env / "customers.yaml").read_bytes())
    assert (tmp_path / "cache" / f"customers-{blob}.pkl").exists()
    # Another process with no warehouse configured at all reads the cached result.
    code = "import modelrepo; print(modelrepo.get_dataset('customers')['n'].tolist())"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={k: v for k, v in __import__("os").environ.items() if k != "MODELREPO_WAREHOUSE_CRM"})
    assert proc.stdout.strip() == "[3]", proc.stderr


def test_the_query_runs_in_a_read_only_transaction(env, shop, monkeypatch):
    monkeypatch.setenv("MODELREPO_WAREHOUSE_CRM", shop.url(user="writer", password="w"))
    write(env, "sneaky", "insert into customers values (9, 'Eve', 'x') returning id")
    with pytest.raises(DatasetError) as err:
        get_dataset("sneaky")
    assert "cannot execute INSERT in a read-only transaction" in str(err.value)
    assert shop.admin_sql("SELECT count(*) FROM customers") == "3"


def test_a_failing_query_names_the_dataset_and_the_database_message(env):
    write(env, "customers", "select nope from customers")
    with pytest.raises(DatasetError) as err:
        get_dataset("customers")
    assert str(err.value).startswith("dataset 'customers': query failed on warehouse 'crm': ")
    assert 'column "nope" does not exist' in str(err.value)


def test_errors_never_show_the_warehouse_password(env, shop, monkeypatch):
    monkeypatch.setenv("MODELREPO_WAREHOUSE_CRM", shop.url(password="wrong-pa55"))
    write(env, "customers", "select 1")
    with pytest.raises(DatasetError) as err:
        get_dataset("customers")
    assert 'password authentication failed for user "reader"' in str(err.value)
    assert "wrong-pa55" not in str(err.value)


def test_missing_file_and_missing_warehouse_say_where_they_looked(env, tmp_path, monkeypatch):
    with pytest.raises(DatasetError, match=rf"dataset 'gone': no file datasets/gone.yaml \(looked in {env}\)"):
        get_dataset("gone")
    write(env, "sales", "select 1", warehouse="snowflake")
    monkeypatch.setenv(datasets.WAREHOUSES_FILE_ENV, str(tmp_path / "w.yaml"))
    (tmp_path / "w.yaml").write_text("crm: postgresql://x\n")
    with pytest.raises(DatasetError) as err:
        get_dataset("sales")
    assert str(err.value) == (f"dataset 'sales': no warehouse 'snowflake' configured: looked in file {tmp_path / 'w.yaml'}, "
                              "environment variable MODELREPO_WAREHOUSE_SNOWFLAKE")


def test_warehouses_from_a_mounted_secret_directory(env, shop, tmp_path, monkeypatch):
    monkeypatch.delenv("MODELREPO_WAREHOUSE_CRM")
    (tmp_path / "wh").mkdir()
    (tmp_path / "wh" / "crm").write_text(shop.url() + "\n")
    monkeypatch.setenv(datasets.WAREHOUSES_DIR_ENV, str(tmp_path / "wh"))
    write(env, "customers", "select count(*) as n from customers")
    assert get_dataset("customers")["n"].tolist() == [3]


def test_datasets_used_reads_literal_names_from_source(tmp_path):
    (tmp_path / "source.py").write_text(textwrap.dedent("""
        import modelbit, modelrepo
        a = modelbit.get_dataset("customers", filters={"id": [1]})
        b = modelrepo.get_dataset( 'sales.v2' )
        c = get_dataset(dsName="leads")
    """))
    assert datasets.datasets_used(tmp_path) == ["customers", "leads", "sales.v2"]
    assert datasets.datasets_used(tmp_path / "none") == []


# -- keeping serve's directory at the branch head ------------------------------------------------
def test_sync_repository_takes_a_new_query_only_once_it_works(env, tmp_path):
    repo = init_repo(tmp_path / "repo")
    (repo / "datasets").mkdir()
    write(repo / "datasets", "customers", "select name from customers where id = 1")
    first = commit_all(repo, "customers")
    active = tmp_path / "active"
    assert sync_repository(repo, first, active) == {}
    prepare(["customers"], active)
    working = (active / "customers.yaml").read_text()
    write(repo / "datasets", "customers", "select nope from customers")
    broken = commit_all(repo, "broken")
    problems = sync_repository(repo, broken, active)
    assert list(problems) == ["customers"]
    assert 'column "nope" does not exist' in problems["customers"]
    assert (active / "customers.yaml").read_text() == working  # the old definition stays in use
    write(repo / "datasets", "customers", "select name from customers where id = 2")
    fixed = commit_all(repo, "fixed")
    assert sync_repository(repo, fixed, active) == {}
    assert "id = 2" in (active / "customers.yaml").read_text()
    (repo / "datasets" / "customers.yaml").unlink()
    gone = commit_all(repo, "gone")
    assert sync_repository(repo, gone, active) == {}
    assert not (active / "customers.yaml").exists()


# -- datasets reach the pod with its folder ------------------------------------------------------
def test_the_pods_fetch_brings_datasets_of_the_same_commit(tmp_path):
    from fixtures.runtime_server import write_deployment

    repo = init_repo(tmp_path / "repo")
    for name in ("A", "B"):
        write_deployment(repo, name, f"def {name}(x: int):\n    return x\n", ["x:int"])
    first = commit_all(repo, "no datasets yet")
    (repo / "datasets").mkdir()
    write(repo / "datasets", "customers", "select 1")
    second = commit_all(repo, "a dataset")

    def fetch(commit: str, dest: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "modelrepo.cli", "fetch", "--url", f"file://{repo}",
                               "--commit", commit, "--path", "deployments/A", "--dest", str(dest), *extra],
                              capture_output=True, text=True)

    proc = fetch(second, tmp_path / "pod")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "pod" / "datasets" / "customers.yaml").read_text() == (repo / "datasets" / "customers.yaml").read_text()
    assert (tmp_path / "pod" / "deployments" / "A" / "source.py").exists()
    assert not (tmp_path / "pod" / "deployments" / "B").exists()
    proc = fetch(first, tmp_path / "old")  # a commit without datasets/ fetches as before
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "old" / "datasets").exists()
    # The operator names the newest commit that changed datasets/ (the folder's commit may be older).
    proc = fetch(first, tmp_path / "later", "--datasets-at", second)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "later" / "datasets" / "customers.yaml").exists()
    assert (tmp_path / "later" / "deployments" / "A" / "source.py").exists()
    proc = fetch(second, tmp_path / "earlier", "--datasets-at", first)
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "earlier" / "datasets").exists()


def test_the_init_check_leaves_folders_reading_datasets_to_the_runtime_container(tmp_path):
    from fixtures.runtime_server import write_deployment

    repo = init_repo(tmp_path / "repo")
    source = 'import modelrepo\nTABLE = modelrepo.get_dataset("customers")\ndef A(x: int):\n    return x\n'
    write_deployment(repo, "A", source, ["x:int"])
    commit = commit_all(repo, "A reads a dataset at import")
    fetch = subprocess.run([sys.executable, "-m", "modelrepo.cli", "fetch", "--url", f"file://{repo}", "--commit", commit,
                            "--path", "deployments/A", "--dest", str(tmp_path / "pod")],
                           capture_output=True, text=True)
    assert fetch.returncode == 0, fetch.stderr
    proc = subprocess.run([sys.executable, "-m", "modelrepo.cli", "check", "--dir", str(tmp_path / "pod" / "deployments" / "A")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "A: reads datasets or secrets: import and docstring tests run in the runtime container" in proc.stdout
