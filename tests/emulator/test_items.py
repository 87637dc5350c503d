"""Folders, file metadata, downloads, versions, users/me and unknown routes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from tests.emulator.wire import auth, create_folder, upload
from tests.support.emulator import EmulatorProcess


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    with EmulatorProcess(tmp_path_factory.mktemp("items")) as emulator:
        yield emulator


def code(response: requests.Response) -> tuple[int, str]:
    return response.status_code, response.json()["code"]


def get(box: EmulatorProcess, path: str, **params: object) -> requests.Response:
    return requests.get(f"{box.api_url}{path}", params=params, headers=auth(box), timeout=30)


def test_create_folder_and_errors(box: EmulatorProcess) -> None:
    reply = create_folder(box, "Projects")
    assert reply.status_code == 201
    folder = reply.json()
    assert folder["type"] == "folder" and folder["etag"] == "0" and folder["sequence_id"] == "0"
    assert folder["parent"]["id"] == "0" and folder["item_status"] == "active" and folder["created_at"]
    clash = create_folder(box, "PROJECTS")
    assert code(clash) == (409, "item_name_in_use")
    conflicts = clash.json()["context_info"]["conflicts"]
    assert isinstance(conflicts, list) and conflicts[0]["id"] == folder["id"]
    assert code(create_folder(box, "x", parent="31337")) == (404, "not_found")
    assert code(create_folder(box, "bad/name")) == (400, "item_name_invalid")
    assert code(create_folder(box, "")) == (400, "item_name_invalid")
    missing = requests.post(f"{box.api_url}/folders", json={"parent": {"id": "0"}}, headers=auth(box), timeout=30)
    assert code(missing) == (400, "bad_request")
    nested = create_folder(box, "Nested", parent=folder["id"]).json()
    assert [entry["id"] for entry in nested["path_collection"]["entries"]] == ["0", folder["id"]]


def test_get_folder_root_and_not_modified(box: EmulatorProcess) -> None:
    root = get(box, "/folders/0").json()
    assert root["id"] == "0" and root["name"] == "All Files" and root["etag"] is None
    assert root["sequence_id"] is None and "item_collection" in root
    folder = create_folder(box, "Etagged").json()
    reply = requests.get(f"{box.api_url}/folders/{folder['id']}",
                         headers={**auth(box), "If-None-Match": folder["etag"]}, timeout=30)
    assert reply.status_code == 304 and reply.content == b""
    assert code(get(box, "/folders/99999999")) == (404, "not_found")
    assert code(get(box, "/folders/not-an-id")) == (405, "method_not_allowed")
    assert code(get(box, "/folders/99999999/items")) == (404, "not_found")


def test_items_offset_and_marker_paging(box: EmulatorProcess) -> None:
    parent = create_folder(box, "Paging").json()["id"]
    create_folder(box, "zz-sub", parent=parent)
    for index in range(7):
        assert upload(box, f"file-{index}.txt", b"%d" % index, parent=parent).status_code == 201
    page = get(box, f"/folders/{parent}/items", limit=3, offset=0).json()
    assert page["total_count"] == 8 and page["limit"] == 3 and page["offset"] == 0
    assert page["entries"][0]["type"] == "folder"  # folders first, then files
    assert all(entry["item_status"] == "active" for entry in page["entries"])
    names: list[str] = []
    offset = 0
    while offset < page["total_count"]:
        chunk = get(box, f"/folders/{parent}/items", limit=3, offset=offset).json()
        names += [entry["name"] for entry in chunk["entries"]]
        offset += chunk["limit"]
    assert names == ["zz-sub"] + [f"file-{index}.txt" for index in range(7)]
    marker_names: list[str] = []
    marker = None
    while True:
        params = {"usemarker": "true", "limit": 3, "fields": "name,size,modified_at"}
        if marker:
            params["marker"] = marker
        chunk = get(box, f"/folders/{parent}/items", **params).json()
        marker_names += [entry["name"] for entry in chunk["entries"]]
        assert all("modified_at" in entry and "size" in entry for entry in chunk["entries"])
        if "next_marker" not in chunk:
            break
        marker = chunk["next_marker"]
        assert marker
    assert marker_names == names
    big = get(box, f"/folders/{parent}/items", limit=5000).json()
    assert big["limit"] == 1000
    descending = get(box, f"/folders/{parent}/items", sort="name", direction="DESC").json()
    assert [entry["name"] for entry in descending["entries"]][1] == "file-6.txt"
    assert code(get(box, f"/folders/{parent}/items", offset=-1)) == (400, "bad_request")
    assert code(get(box, f"/folders/{parent}/items", sort="color")) == (400, "bad_request")
    assert code(get(box, f"/folders/{parent}/items", usemarker="true", marker="@@@")) == (400, "bad_request")


def test_file_get_update_delete(box: EmulatorProcess) -> None:
    item = upload(box, "meta.txt", b"meta").json()["entries"][0]
    fetched = get(box, f"/files/{item['id']}").json()
    assert fetched["id"] == item["id"] and fetched["sha1"] == item["sha1"]
    assert get(box, f"/files/{item['id']}", fields="name").json().keys() >= {"type", "id", "etag", "name"}
    target = create_folder(box, "Moved-To").json()
    reply = requests.put(f"{box.api_url}/files/{item['id']}", headers=auth(box), timeout=30,
                         json={"content_modified_at": "2023-03-03T03:03:03+00:00", "name": "meta2.txt",
                               "parent": {"id": target["id"]}, "description": "moved"})
    assert reply.status_code == 200, reply.text
    updated = reply.json()
    assert updated["content_modified_at"] == "2023-03-03T03:03:03+00:00"
    assert updated["name"] == "meta2.txt" and updated["parent"]["id"] == target["id"]
    assert updated["etag"] != item["etag"]
    stale = requests.put(f"{box.api_url}/files/{item['id']}", json={"name": "x.txt"},
                         headers={**auth(box), "If-Match": item["etag"]}, timeout=30)
    assert code(stale) == (412, "precondition_failed")
    bad_time = requests.put(f"{box.api_url}/files/{item['id']}", json={"content_modified_at": "yesterday"},
                            headers=auth(box), timeout=30)
    assert code(bad_time) == (400, "bad_request")
    upload(box, "occupied.txt", b"o", parent=target["id"])
    clash = requests.put(f"{box.api_url}/files/{item['id']}", json={"name": "Occupied.txt"},
                         headers=auth(box), timeout=30)
    assert code(clash) == (409, "item_name_in_use")
    deleted = requests.delete(f"{box.api_url}/files/{item['id']}", headers=auth(box), timeout=30)
    assert deleted.status_code == 204
    assert code(get(box, f"/files/{item['id']}")) == (404, "not_found")
    assert "meta2.txt" not in {entry["name"] for entry in box.folder_items(target["id"])}
    assert upload(box, "meta2.txt", b"again", parent=target["id"]).status_code == 201
    assert code(get(box, "/files/123456789012")) == (404, "not_found")
    assert code(requests.delete(f"{box.api_url}/files/123456789012", headers=auth(box), timeout=30)) == \
        (404, "not_found")


def test_download_versions_and_user(box: EmulatorProcess) -> None:
    item = upload(box, "dl.bin", b"first").json()["entries"][0]
    files = [("attributes", (None, "{}")), ("file", ("f", b"second"))]
    requests.post(f"{box.upload_url}/files/{item['id']}/content", files=files, headers=auth(box), timeout=30)
    assert get(box, f"/files/{item['id']}/content").content == b"second"
    versions = get(box, f"/files/{item['id']}/versions").json()
    assert versions["total_count"] == 1
    old = versions["entries"][0]
    assert old["type"] == "file_version" and old["size"] == 5
    assert get(box, f"/files/{item['id']}/content", version=old["id"]).content == b"first"
    me = get(box, "/users/me").json()
    assert me == {**me, "type": "user", "id": "11446498", "name": "Emulator User", "login": "emulator@example.com"}
    assert me["space_used"] > 0


def test_unknown_paths_and_methods(box: EmulatorProcess) -> None:
    assert code(get(box, "/no/such/thing")) == (404, "not_found")
    assert code(requests.get(f"{box.origin}/favicon.ico", timeout=30)) == (404, "not_found")
    patch = requests.patch(f"{box.api_url}/folders/0", headers=auth(box), timeout=30)
    assert code(patch) == (405, "method_not_allowed")


def test_conditional_get_head_and_fields(box: EmulatorProcess) -> None:
    item = upload(box, "cond.txt", b"conditional").json()["entries"][0]
    not_modified = requests.get(f"{box.api_url}/files/{item['id']}",
                                headers={**auth(box), "If-None-Match": item["etag"]}, timeout=30)
    assert not_modified.status_code == 304
    redirect = requests.head(f"{box.api_url}/files/{item['id']}/content", headers=auth(box), timeout=30)
    assert redirect.status_code == 302 and redirect.content == b""
    head = requests.head(redirect.headers["Location"], timeout=30)  # the download URL needs no token
    assert head.status_code == 200 and head.headers["Content-Length"] == "11" and head.content == b""
    assert head.headers["ETag"] == f'"{item["sha1"]}"'
    folder = get(box, "/folders/0", fields="name,size").json()
    assert set(folder) == {"type", "id", "etag", "sequence_id", "name", "size"}
    assert code(get(box, f"/files/{item['id']}/content", version="999")) == (404, "not_found")
