"""A repository in Modelbit's shapes served unchanged by a real `modelrepo serve` on loopback."""

from __future__ import annotations

import pytest
from fixtures.modelbit_repos import NEEDS_FOLDER_CONTEXT as FOLDER_CONTEXT
from fixtures.modelbit_repos import STUB_HASH, build_modelbit_repo
from fixtures.runtime_server import Server, Servers, wait_for


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, module_servers: Servers) -> Server:
    repo = build_modelbit_repo(tmp_path_factory.mktemp("modelbit-serve") / "models")
    started = module_servers.start("serve", str(repo.path), "--interval", "200ms",
                                   "--cache-dir", str(module_servers.tmp / "cache"))
    started.wait_listening()  # not /readyz: it is 503 while any deployment (Stubbed) is refused
    wait_for(lambda: all(f"{name} v1" in started.output() for name in ("Linear_Model", "Shared_Scale",
             "No_Args", "Frame_Sum", "Stubbed", *FOLDER_CONTEXT)), "serve to report every deployment")
    return started


def data(server: Server, name: str, body: object) -> object:
    r = server.post(f"/v1/{name}/latest", body)
    assert r.status_code == 200, r.text
    return r.json()["data"]


def test_the_article_function_with_import_modelbit_answers_single_and_batch(server):
    assert data(server, "Linear_Model", {"data": 5}) == 11.0
    assert data(server, "Linear_Model", {"data": [[1, 5], [2, 6]]}) == [[1, 11.0], [2, 13.0]]
    assert "Linear_Model: log_image {'input': 5}" in server.output()


def test_common_links_resolve(server):
    assert data(server, "Shared_Scale", {"data": 4}) == 12


def test_no_arguments_and_dataframe_mode(server):
    assert data(server, "No_Args", {"data": []}) == "pong"
    assert data(server, "Frame_Sum", {"data": [[1, {"a": 1, "b": 2}], [2, {"a": 3, "b": 4}]]}) == [[1, 3], [2, 7]]


def test_a_stub_is_named_with_what_to_do(server):
    r = server.post("/v1/Stubbed/latest", {"data": 1})
    assert r.status_code == 503, r.text
    message = r.json()["error"]
    assert "deployments/Stubbed/data/model.pkl: a Modelbit file stub" in message and STUB_HASH in message
    assert "commit the file itself" in message
    assert "invalid load key" not in server.output() and "Traceback" not in server.output()


def test_an_archived_folder_is_not_served(server):
    r = server.post("/v1/Old_Model/latest", {"data": 1})
    assert r.status_code == 404 and "archived" in r.json()["error"], r.text
    assert "Old_Model archived at" in server.output()


def test_relative_open_works(server):
    assert data(server, "Reads_File", {"data": "Ada"}) == "Hello, Ada!"


def test_a_package_inside_the_folder_imports(server):
    assert data(server, "With_Package", {"data": "abc"}) == 3


def test_a_python_file_linked_from_common_imports(server):
    assert data(server, "Common_Import", {"data": 2}) == 6
