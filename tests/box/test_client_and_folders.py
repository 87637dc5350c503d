"""BoxClient calls, FolderTree and transport behaviour (retries, rate limits,
User-Agent) against the real emulator."""

from __future__ import annotations


import pytest

from syncd.box import BoxAPIError, ErrorClass, FolderTree, RetryPolicy, Uploader

from .conftest import FakeTime, count, make_client


def test_folder_tree_creates_then_caches(emulator, client) -> None:
    tree = FolderTree(client)
    leaf = tree.ensure("0", ("inbox", "2026", "march"))
    assert leaf == tree.ensure("0", ("inbox", "2026", "march"))
    assert count(emulator.stats(), "folders.create", "201") == 3  # the second ensure was cached
    names = [item["name"] for item in emulator.folder_items("0")]
    assert names == ["inbox"]


def test_folder_tree_resolves_409_to_the_existing_folder(emulator, client) -> None:
    first = FolderTree(client).ensure("0", ("shared", "deep"))
    # Another process (no shared cache) ensures the same path: both creates meet 409.
    second = FolderTree(make_client(emulator)).ensure("0", ("Shared", "deep"))  # Box names are case-insensitive
    assert first == second
    assert count(emulator.stats(), "folders.create", "409") == 2


def test_folder_tree_with_a_file_in_the_way(client, make_file) -> None:
    Uploader(client).upload(make_file("x", 10), "0", "blocker")
    with pytest.raises(BoxAPIError) as caught:
        FolderTree(client).ensure("0", ("blocker", "sub"))
    assert caught.value.error_class is ErrorClass.NAME_CONFLICT


def test_create_folder_conflict_lists_conflicts_as_array(client) -> None:
    made = client.create_folder("0", "dup")
    with pytest.raises(BoxAPIError) as caught:
        client.create_folder("0", "dup")
    assert caught.value.status == 409 and [c.id for c in caught.value.conflicts] == [made["id"]]


def test_listing_follows_markers_and_find_file(emulator, client, make_file) -> None:
    folder = FolderTree(client).ensure("0", ("many",))
    for i in range(5):
        Uploader(client).upload(make_file(f"f{i}", 100 + i, seed=i), folder, f"File-{i}.txt")
    emulator.reset_stats()
    names = sorted(item["name"] for item in client.iter_folder_items(folder, limit=2))
    assert names == [f"File-{i}.txt" for i in range(5)]
    assert count(emulator.stats(), "folders.items", "200") == 3  # 2 + 2 + 1
    found = client.find_file(folder, "file-3.TXT")  # case-insensitive, like Box
    assert found is not None and found["name"] == "File-3.txt" and len(found["sha1"]) == 40
    assert client.find_file(folder, "absent.txt") is None
    assert client.find_item("0", "many", item_type="folder")["id"] == folder


def test_get_update_delete_file(emulator, client, make_file) -> None:
    uploaded = Uploader(client).upload(make_file("g", 1000), "0", "g.txt")
    assert client.get_file(uploaded.file_id)["sha1"] == uploaded.sha1
    changed = client.update_file(uploaded.file_id, {"content_modified_at": "2020-01-02T03:04:05+00:00"},
                                 etag=uploaded.etag)
    assert changed["content_modified_at"].startswith("2020-01-02T03:04:05")
    client.delete_file(uploaded.file_id)
    with pytest.raises(BoxAPIError) as caught:
        client.get_file(uploaded.file_id)
    assert caught.value.status == 404


def test_preflight(client, make_file) -> None:
    answer = client.preflight("0", "new.txt", 1000)
    assert answer.upload_url and answer.upload_url.startswith("http")
    with pytest.raises(BoxAPIError) as caught:
        client.preflight("555555", "x.txt", 10)
    assert caught.value.status == 404


def test_429_storm_with_retry_after_on_api_calls(emulator) -> None:
    fake = FakeTime()
    emulator.faults(reject_next={"count": 2, "status": 429, "retry_after": 1, "endpoint": "users.me"})
    with make_client(emulator, sleep=fake.sleep) as client:
        assert client.get_current_user()["id"]
    # Retry-After (1 s, plus its jitter of at most 0.15 s) each time, not the policy's backoff (<= 0.5 s).
    assert len(fake.sleeps) == 2 and all(1.0 <= s <= 1.15 for s in fake.sleeps), fake.sleeps
    assert count(emulator.stats(), "users.me", "429") == 2


def test_persistent_503_gives_up_with_retry_later(emulator) -> None:
    policy = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05)
    with make_client(emulator, retry=policy) as client:
        emulator.faults(reject_next={"count": 10, "status": 503, "endpoint": "users.me"})
        with pytest.raises(BoxAPIError) as caught:
            client.get_current_user()
    assert caught.value.status == 503 and caught.value.error_class is ErrorClass.RETRY_LATER
    assert count(emulator.stats(), "users.me", "503") == 3


def test_no_tls_downgrade_for_remote_hosts(client) -> None:
    client.transport.verify = False
    assert client.transport._verify_for("https://api.box.com/2.0") is True
    assert client.transport._verify_for("https://127.0.0.1:8443/2.0") is False


def test_lost_answer_to_a_post_is_not_blindly_repeated(emulator, client) -> None:
    from syncd.box import BoxConnectionError, OutcomeUnknown

    from .conftest import stop_dropping

    emulator.faults(drop_rate=1.0)
    with pytest.raises(OutcomeUnknown):
        client.transport.request("POST", f"{client.upload_url}/files/content", data=b"x" * 10_000,
                                 headers={"Content-Type": "application/octet-stream"}, replay_safe=False)
    # A request that is safe to repeat is retried, then reported as a connection failure.
    with pytest.raises(BoxConnectionError):
        client.transport.request("PUT", f"{client.api_url}/files/1", data=b"{}" * 100)
    stop_dropping(emulator)
    stats = emulator.stats()
    assert count(stats, "files.upload") == 1  # sent once, never repeated
    assert count(stats, "files.update") == client.transport.retry.max_attempts
