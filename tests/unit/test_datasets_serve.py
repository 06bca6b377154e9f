"""Datasets and secrets through a real `modelrepo serve` and a real PostgreSQL.

A deployment joins its input with `get_dataset("customers", filters=...)`; pushing a new query
changes its answer; a broken query is named in the log and /readyz while the previous query's
result keeps serving. A secret reaches the function's answer and nothing else.
"""

from __future__ import annotations

import pytest
import yaml
from fixtures.runtime_server import (
    Server,
    Servers,
    commit_all,
    init_repo,
    wait_for,
    write_deployment,
)

ENRICH = '''
import pandas as pd
import modelrepo

def Enrich(customer_id: int):
    order = pd.DataFrame([{"customer_id": customer_id}])
    customers = modelrepo.get_dataset("customers", filters={"id": [customer_id]})
    joined = order.merge(customers, left_on="customer_id", right_on="id", how="left")
    return joined[["customer_id", "name", "segment"]].to_dict("records")
'''


@pytest.fixture(scope="module")
def crm(postgres):
    postgres.admin_sql(
        "DROP TABLE IF EXISTS serve_customers;"
        "CREATE TABLE serve_customers (id int PRIMARY KEY, name text, segment text);"
        "INSERT INTO serve_customers VALUES (1, 'Ann', 'gold'), (2, 'Bob', 'silver');"
    )
    return postgres


def dataset(repo, query: str) -> None:
    (repo / "datasets").mkdir(exist_ok=True)
    (repo / "datasets" / "customers.yaml").write_text(
        yaml.safe_dump({"query": query, "warehouse": "crm", "schemaVersion": 2}, sort_keys=False))


def until(server: Server, condition, what: str) -> None:
    """wait_for, failing with the server's output (the log is what explains a timeout here)."""
    try:
        wait_for(condition, what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- server output ---\n{server.output()}") from None


def enrich(server: Server, customer_id: int):
    r = server.post("/v1/Enrich/latest", {"data": customer_id})
    assert r.status_code == 200, r.text
    return r.json()["data"]


def test_a_deployment_joins_its_input_with_a_dataset_that_follows_pushes(tmp_path, servers: Servers, crm):
    repo = init_repo(tmp_path / "models")
    write_deployment(repo, "Enrich", ENRICH, ["customer_id:int"])
    dataset(repo, "select id, name, segment from serve_customers")
    commit_all(repo, "v1")
    (tmp_path / "warehouses.yaml").write_text(yaml.safe_dump({"crm": crm.url()}))
    server = servers.start("serve", str(repo), "--interval", "200ms", "--cache-dir", str(tmp_path / "cache"),
                           "--warehouses", str(tmp_path / "warehouses.yaml"))
    server.wait_ready()
    assert enrich(server, 1) == [{"customer_id": 1, "name": "Ann", "segment": "gold"}]
    assert enrich(server, 3) == [{"customer_id": 3, "name": None, "segment": None}]

    dataset(repo, "select id, name, upper(segment) as segment from serve_customers")
    commit_all(repo, "a new query")
    until(server, lambda: enrich(server, 2) == [{"customer_id": 2, "name": "Bob", "segment": "SILVER"}],
             "the new query's answer")

    dataset(repo, "select id, name, segmnt from serve_customers")
    broken = commit_all(repo, "a broken query")
    problem = 'dataset \'customers\': query failed on warehouse \'crm\': column "segmnt" does not exist'
    until(server, lambda: problem in server.output(), "the query's failure in the log")
    assert f"(at {broken[:7]}; the previous definition stays in use)" in server.output()
    ready = server.client.get("/readyz").json()
    assert problem in ready["deployments"][0]["reason"]
    assert enrich(server, 2) == [{"customer_id": 2, "name": "Bob", "segment": "SILVER"}]  # the old query serves

    # A new version that needs a dataset whose query never worked is refused; v1 keeps serving.
    (repo / "datasets" / "vip.yaml").write_text("query: select id from vip_list\nwarehouse: crm\nschemaVersion: 2\n")
    write_deployment(repo, "Enrich", ENRICH.replace("    return joined", '    vip = modelrepo.get_dataset("vip")\n    return joined'),
                     ["customer_id:int"])
    v2 = commit_all(repo, "Enrich v2 reads vip")
    refusal = (f"Enrich v2 ({v2[:7]}) refused: deployments/Enrich/source.py: dataset 'vip': query failed on "
               'warehouse \'crm\': relation "vip_list" does not exist')
    until(server, lambda: refusal in server.output(), "the refusal of Enrich v2")
    assert f"(at {v2[:7]}; nothing in use)" in server.output()
    r = server.post("/v1/Enrich/latest", {"data": 2})
    assert r.headers["x-modelrepo-version"] == "1" and r.json()["data"][0]["segment"] == "SILVER"
    assert 'relation "vip_list" does not exist' in server.client.get("/readyz").json()["deployments"][0]["reason"]

    # Both queries fixed: v2 is tried again and serves the fixed query's answer.
    dataset(repo, "select id, name, lower(segment) as segment from serve_customers")
    (repo / "datasets" / "vip.yaml").write_text("query: select id from serve_customers\nwarehouse: crm\nschemaVersion: 2\n")
    commit_all(repo, "fixed queries")
    until(server, lambda: server.post("/v1/Enrich/latest", {"data": 1}).headers.get("x-modelrepo-version") == "2",
             "Enrich v2 once its datasets work")
    assert enrich(server, 1) == [{"customer_id": 1, "name": "Ann", "segment": "gold"}]
    assert "reason" not in server.client.get("/readyz").json()["deployments"][0]
    assert crm.url() not in server.output() and "rd-0nly-pa55" not in server.output()


WHISPER = '''
import modelrepo

def Whisper(ask: int):
    if ask == 1:
        return modelrepo.get_secret("API_TOKEN")
    if ask == 2:
        return modelrepo.get_secret("NOT_THERE")
    return "not asked"
'''
SECRET = "tok-5ecret-value-91d2"


def test_a_secret_appears_only_in_the_answer_that_asks_for_it(tmp_path, servers: Servers):
    repo = init_repo(tmp_path / "models")
    write_deployment(repo, "Whisper", WHISPER, ["ask:int"])
    commit_all(repo, "v1")
    (tmp_path / "secrets.yaml").write_text(f"API_TOKEN: {SECRET}\n")
    server = servers.start("serve", str(repo), "--interval", "200ms", "--cache-dir", str(tmp_path / "cache"),
                           "--secrets", str(tmp_path / "secrets.yaml"))
    server.wait_ready()
    assert server.post("/v1/Whisper/latest", {"data": 0}).json() == {"data": "not asked"}
    assert server.post("/v1/Whisper/latest", {"data": 1}).json() == {"data": SECRET}
    missing = server.post("/v1/Whisper/latest", {"data": 2})
    assert missing.status_code == 500
    assert "no secret 'NOT_THERE': looked in file" in missing.json()["error"]
    assert "environment variable MODELREPO_SECRET_NOT_THERE" in missing.json()["error"]
    assert SECRET not in missing.text
    assert SECRET not in server.client.get("/readyz").text
    assert SECRET not in server.output()


def test_serve_refuses_a_secrets_file_that_is_not_there(tmp_path, servers: Servers):
    repo = init_repo(tmp_path / "models")
    write_deployment(repo, "Whisper", WHISPER, ["ask:int"])
    commit_all(repo, "v1")
    server = servers.start("serve", str(repo), "--secrets", str(tmp_path / "nope.yaml"))
    assert server.proc.wait(60) == 2 or server.proc.returncode != 0
    assert f"--secrets {tmp_path / 'nope.yaml'}: no such file" in server.output()
