"""The official Box Python SDK (boxsdk 10.x, module box_sdk_gen) drives the emulator through its own API.

This is the independent-client bar of issue 2: none of syncd's code is involved, the
SDK builds every request itself and checks the answers its own way (for example
``upload_big_file`` asserts part sha1/size/offset and ``total_count == total_parts``).
Only the SDK's base URLs are pointed at the emulator. boxsdk 10.18 is the supported
SDK (box-sdk-gen is deprecated); its ``upload_big_file_version`` plans every part
(issue 13) and sends only the misses.
"""

from __future__ import annotations

import base64
import hashlib
import io
import secrets
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from box_sdk_gen import (AccessToken, BoxCCGAuth, BoxClient, BoxDeveloperTokenAuth, BoxJWTAuth, BoxOAuth, CCGConfig,
                         InMemoryTokenStorage, JWTConfig, OAuthConfig)
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from box_sdk_gen.box.errors import BoxAPIError
from box_sdk_gen.managers.folders import CreateFolderParent
from box_sdk_gen.managers.uploads import (
    PreflightFileUploadCheckParent,
    UploadFileAttributes,
    UploadFileAttributesParentField,
    UploadFileVersionAttributes,
    UploadWithPreflightCheckAttributes,
    UploadWithPreflightCheckAttributesParentField,
)
from box_sdk_gen.networking.base_urls import BaseUrls
from box_sdk_gen.networking.network import NetworkSession
from box_sdk_gen.schemas.upload_part import UploadPart
from box_sdk_gen.schemas.upload_part_plan import UploadPartPlan

from tests.support.emulator import EmulatorProcess

PART_SIZE = 1024 * 1024  # small parts keep the big-file tests at a few MiB
EMULATOR_ARGS = ("--min-chunked-size", "1024", "--part-sizes", f"*={PART_SIZE}")


CLIENT_ID = "syncd-emulator-client"
CLIENT_SECRET = "syncd-emulator-secret"  # the emulator's documented default, not a real secret


def emulator_network(emulator: EmulatorProcess) -> NetworkSession:
    """SDK network settings whose API, upload and OAuth base URLs all point at the emulator."""
    base_urls = BaseUrls(
        base_url=emulator.origin,  # the SDK appends /2.0/... and /oauth2/token
        upload_url=f"{emulator.origin}/api",  # ... and /2.0/files/... here
        oauth_2_url=f"{emulator.origin}/api/oauth2",
    )
    return NetworkSession(base_urls=base_urls)


def sdk_client(emulator: EmulatorProcess) -> BoxClient:
    """A BoxClient on the emulator's developer token."""
    return BoxClient(auth=BoxDeveloperTokenAuth(token=emulator.token), network_session=emulator_network(emulator))


def sha1_hex(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def unique(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def sdk_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    process = EmulatorProcess(tmp_path_factory.mktemp("sdk"), *EMULATOR_ARGS)
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def client(sdk_emulator: EmulatorProcess) -> BoxClient:
    return sdk_client(sdk_emulator)


def test_sdk_creates_folder_and_uploads_file(client: BoxClient, sdk_emulator: EmulatorProcess) -> None:
    folder = client.folders.create_folder(unique("sdk-folder"), CreateFolderParent(id="0"))
    assert folder.id and folder.parent.id == "0"
    data = b"uploaded by boxsdk\n" * 50
    files = client.uploads.upload_file(
        UploadFileAttributes(name="hello.txt", parent=UploadFileAttributesParentField(id=folder.id)),
        io.BytesIO(data),
    )
    assert files.total_count == 1
    uploaded = files.entries[0]
    assert uploaded.sha_1 == sha1_hex(data) and uploaded.size == len(data) and uploaded.parent.id == folder.id
    assert sdk_emulator.download(uploaded.id) == data
    fetched = client.files.get_file_by_id(uploaded.id)
    assert fetched.sha_1 == uploaded.sha_1

    # the SDK sees the folder conflict as a BoxAPIError 409
    with pytest.raises(BoxAPIError) as clash:
        client.folders.create_folder(folder.name, CreateFolderParent(id="0"))
    assert clash.value.response_info.status_code == 409
    assert clash.value.response_info.code == "item_name_in_use"


def test_sdk_preflight_check_and_upload_with_preflight(client: BoxClient, sdk_emulator: EmulatorProcess) -> None:
    name = unique("preflight.txt")
    data = secrets.token_bytes(5000)
    upload_url = client.uploads.preflight_file_upload_check(
        name=name, size=len(data), parent=PreflightFileUploadCheckParent(id="0")
    )
    assert upload_url.upload_url and "http" in upload_url.upload_url

    files = client.uploads.upload_with_preflight_check(
        UploadWithPreflightCheckAttributes(
            name=name, size=len(data), parent=UploadWithPreflightCheckAttributesParentField(id="0")
        ),
        io.BytesIO(data),
    )
    assert files.entries[0].name == name and files.entries[0].sha_1 == sha1_hex(data)

    with pytest.raises(BoxAPIError) as clash:
        client.uploads.preflight_file_upload_check(name=name, size=len(data), parent=PreflightFileUploadCheckParent(id="0"))
    assert clash.value.response_info.status_code == 409
    conflicts = clash.value.response_info.context_info["conflicts"]
    assert conflicts["id"] == files.entries[0].id and conflicts["sha1"] == sha1_hex(data)


def test_sdk_uploads_a_new_version(client: BoxClient, sdk_emulator: EmulatorProcess) -> None:
    first = client.uploads.upload_file(
        UploadFileAttributes(name=unique("versioned.txt"), parent=UploadFileAttributesParentField(id="0")),
        io.BytesIO(b"version one"),
    ).entries[0]
    second = client.uploads.upload_file_version(
        first.id, UploadFileVersionAttributes(name=first.name), io.BytesIO(b"version two"), if_match=first.etag
    ).entries[0]
    assert second.id == first.id and second.sha_1 == sha1_hex(b"version two")
    assert second.file_version.id != first.file_version.id
    assert sdk_emulator.download(first.id) == b"version two"
    assert len(sdk_emulator.file_versions(first.id)) >= 1


def test_sdk_upload_big_file(client: BoxClient, sdk_emulator: EmulatorProcess) -> None:
    data = secrets.token_bytes(3 * PART_SIZE + 12345)
    name = unique("big.bin")
    uploaded = client.chunked_uploads.upload_big_file(io.BytesIO(data), name, len(data), "0")
    assert uploaded.name == name and uploaded.size == len(data) and uploaded.sha_1 == sha1_hex(data)
    assert sdk_emulator.download(uploaded.id) == data


def test_sdk_manual_chunked_sequence(client: BoxClient, sdk_emulator: EmulatorProcess) -> None:
    data = secrets.token_bytes(2 * PART_SIZE + 999)
    manager = client.chunked_uploads
    session = manager.create_file_upload_session("0", len(data), unique("manual.bin"))
    assert session.num_parts_processed == 0 and session.total_parts == 3

    parts: list[UploadPart] = []
    for offset in range(0, len(data), session.part_size):
        chunk = data[offset : offset + session.part_size]
        digest = "sha=" + base64.b64encode(hashlib.sha1(chunk).digest()).decode()
        content_range = f"bytes {offset}-{offset + len(chunk) - 1}/{len(data)}"
        part = manager.upload_file_part(session.id, io.BytesIO(chunk), digest, content_range).part
        assert part.offset == offset and part.size == len(chunk) and part.sha_1 == sha1_hex(chunk)
        parts.append(part)

    listed = manager.get_file_upload_session_parts(session.id)
    assert listed.total_count == 3 and [p.part_id for p in listed.entries] == [p.part_id for p in parts]
    status = manager.get_file_upload_session_by_id(session.id)
    assert status.id == session.id and status.num_parts_processed == 3

    digest = "sha=" + base64.b64encode(hashlib.sha1(data).digest()).decode()
    committed = manager.create_file_upload_session_commit(session.id, parts, digest)
    assert committed is not None and committed.entries[0].sha_1 == sha1_hex(data)
    assert sdk_emulator.download(committed.entries[0].id) == data
    # sdkgen's own live test aborts after commit and expects no error
    manager.delete_file_upload_session_by_id(session.id)


def test_sdk_aborts_a_session(client: BoxClient) -> None:
    manager = client.chunked_uploads
    session = manager.create_file_upload_session("0", 2 * PART_SIZE, unique("aborted.bin"))
    chunk = b"\0" * PART_SIZE
    digest = "sha=" + base64.b64encode(hashlib.sha1(chunk).digest()).decode()
    manager.upload_file_part(session.id, io.BytesIO(chunk), digest, f"bytes 0-{PART_SIZE - 1}/{2 * PART_SIZE}")
    manager.delete_file_upload_session_by_id(session.id)
    with pytest.raises(BoxAPIError) as gone:
        manager.get_file_upload_session_by_id(session.id)
    assert gone.value.response_info.status_code == 404


def test_sdk_urls_point_at_the_emulator(sdk_emulator: EmulatorProcess) -> None:
    """Guards the setup: a client with default URLs would reach api.box.com, not the emulator."""
    client: Any = sdk_client(sdk_emulator)
    urls = client.network_session.base_urls
    assert urls.base_url + "/2.0" == sdk_emulator.api_url
    assert urls.upload_url + "/2.0" == sdk_emulator.upload_url


def test_sdk_client_credentials_auth_and_refresh_after_expiry(emulator: EmulatorProcess) -> None:
    # its own emulator: expiring tokens would also expire the module's developer token
    auth = BoxCCGAuth(config=CCGConfig(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, enterprise_id="1234567"))
    client = BoxClient(auth=auth, network_session=emulator_network(emulator))
    before = client.users.get_user_me()
    first_token = auth.token_storage.get().access_token
    emulator.expire_tokens()
    # the SDK sees 401, fetches a new token through /oauth2/token and retries
    after = client.users.get_user_me()
    assert after.id == before.id
    assert auth.token_storage.get().access_token != first_token


def test_sdk_jwt_auth(sdk_emulator: EmulatorProcess) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    passphrase = secrets.token_hex(8)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase.encode()),
    ).decode()
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    sdk_emulator.register_jwt_key("sdk-test-kid", public_pem)
    config = JWTConfig(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        jwt_key_id="sdk-test-kid",
        private_key=private_pem,
        private_key_passphrase=passphrase,
        enterprise_id="1234567",
    )
    client = BoxClient(auth=BoxJWTAuth(config=config), network_session=emulator_network(sdk_emulator))
    folder = client.folders.create_folder(unique("jwt-folder"), CreateFolderParent(id="0"))
    assert folder.id


def test_sdk_plan_after_upload_big_file_hits_every_part(client: BoxClient) -> None:
    data = secrets.token_bytes(3 * PART_SIZE + 4321)
    uploaded = client.chunked_uploads.upload_big_file(io.BytesIO(data), unique("planned.bin"), len(data), "0")
    manager = client.chunked_uploads
    session = manager.create_file_upload_session_for_existing_file(uploaded.id, len(data))
    assert session.session_endpoints.plan and session.total_parts == 4
    parts = [UploadPartPlan(offset=offset, size=len(data[offset:offset + session.part_size]),
                            sha_512=hashlib.sha512(data[offset:offset + session.part_size]).hexdigest())
             for offset in range(0, len(data), session.part_size)]
    plan = manager.create_file_upload_session_plan_by_url(session.session_endpoints.plan, parts)
    assert plan.upload_session_id == session.id
    assert len(plan.hits) == session.total_parts and plan.misses == []
    assert [(hit.offset, hit.size, hit.sha_512) for hit in plan.hits] == [(p.offset, p.size, p.sha_512) for p in parts]
    assert all(hit.part_id for hit in plan.hits)
    by_id = manager.create_file_upload_session_plan(session.id, parts[1:2])
    assert [hit.part_id for hit in by_id.hits] == [plan.hits[1].part_id] and by_id.misses == []
    manager.delete_file_upload_session_by_id(session.id)


def test_sdk_upload_big_file_version_sends_only_the_changed_part(client: BoxClient,
                                                                   sdk_emulator: EmulatorProcess) -> None:
    old = secrets.token_bytes(3 * PART_SIZE + 777)
    first = client.chunked_uploads.upload_big_file(io.BytesIO(old), unique("delta.bin"), len(old), "0")
    new = old[:PART_SIZE] + secrets.token_bytes(PART_SIZE) + old[2 * PART_SIZE:]  # the second of four parts
    sdk_emulator.reset_stats()
    version = client.chunked_uploads.upload_big_file_version(first.id, io.BytesIO(new), len(new))
    assert version is not None and version.id == first.id and version.sha_1 == sha1_hex(new)
    assert version.file_version.id != first.file_version.id
    stats = sdk_emulator.stats()
    assert stats["requests"]["sessions.upload_part"] == {"200": 1}  # exactly one part was received ...
    assert sdk_emulator.part_bytes_received() == PART_SIZE  # ... and only its bytes
    assert stats["requests"]["sessions.plan"] == {"200": 4}  # the SDK plans part by part
    assert sdk_emulator.download(first.id) == new
    assert [v["sha1"] for v in sdk_emulator.file_versions(first.id)] == [sha1_hex(old)]


def test_sdk_upload_big_file_version_of_identical_content_sends_nothing(client: BoxClient,
                                                                          sdk_emulator: EmulatorProcess) -> None:
    data = secrets.token_bytes(2 * PART_SIZE + 5)
    first = client.chunked_uploads.upload_big_file(io.BytesIO(data), unique("same.bin"), len(data), "0")
    sdk_emulator.reset_stats()
    # boxsdk: "Returns nothing when commit responds with 202 because the file did not change."
    assert client.chunked_uploads.upload_big_file_version(first.id, io.BytesIO(data), len(data)) is None
    assert sdk_emulator.part_bytes_received() == 0
    assert sdk_emulator.get_file(first.id)["file_version"]["id"] == first.file_version.id
    assert sdk_emulator.file_versions(first.id) == []


def test_sdk_download_file_follows_the_redirect(client: BoxClient, sdk_emulator: EmulatorProcess) -> None:
    data = secrets.token_bytes(2 * PART_SIZE + 99)
    uploaded = client.chunked_uploads.upload_big_file(io.BytesIO(data), unique("download.bin"), len(data), "0")
    stream = client.downloads.download_file(uploaded.id)
    assert stream is not None and stream.read() == data
    part = client.downloads.download_file(uploaded.id, range=f"bytes={PART_SIZE - 10}-{PART_SIZE + 9}")
    assert part is not None and part.read() == data[PART_SIZE - 10:PART_SIZE + 10]
    url = client.downloads.get_download_file_url(uploaded.id)
    assert url.startswith(f"{sdk_emulator.origin}/d/1/")


def test_sdk_oauth_from_a_minted_refresh_token_refreshes_and_rotates(emulator: EmulatorProcess) -> None:
    # its own emulator: expiring tokens would also expire the module's developer token
    minted = emulator.mint_tokens()
    storage = InMemoryTokenStorage(AccessToken(access_token=minted["access_token"],
                                               refresh_token=minted["refresh_token"]))
    auth = BoxOAuth(OAuthConfig(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, token_storage=storage))
    client = BoxClient(auth=auth, network_session=emulator_network(emulator))
    me = client.users.get_user_me()
    assert me.id == "11446498"
    used = [minted["refresh_token"]]
    for _ in range(2):  # twice: the rotated refresh token works as the first one did
        emulator.expire_tokens()
        # the SDK sees 401, refreshes with its stored refresh token and retries
        assert client.users.get_user_me().id == me.id
        rotated = storage.get()
        assert rotated is not None and rotated.refresh_token not in used
        used.append(rotated.refresh_token)
    for old in used[:-1]:  # every refresh token before the current one is refused
        reply = requests.post(emulator.token_url, timeout=30, data={
            "grant_type": "refresh_token", "refresh_token": old, "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET})
        assert reply.status_code == 400 and reply.json()["error"] == "invalid_grant"
