import hashlib
import os
from datetime import datetime
from pathlib import Path

import pytest

from syncd.pipeline.actions import AfterUpload, ArchivePlan, SourceActionRefused, apply_after_upload
from syncd.pipeline.identity import FileIdentity

WHEN = datetime(2026, 11, 21, 10, 0, 0)


def _drop(tmp_path: Path, name: str = "scan.pdf", data: bytes = b"payload") -> tuple[Path, FileIdentity, str]:
    path = tmp_path / "inbox" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path, FileIdentity.of(path), hashlib.sha1(data).hexdigest()


def test_keep_leaves_file(tmp_path):
    path, ident, sha1 = _drop(tmp_path)
    assert apply_after_upload(AfterUpload.KEEP, path, "scan.pdf", hashed=ident, local_sha1=sha1, box_sha1="0" * 40) is None
    assert path.exists()


def test_delete_after_verified_upload(tmp_path):
    path, ident, sha1 = _drop(tmp_path)
    apply_after_upload(AfterUpload.DELETE, path, "scan.pdf", hashed=ident, local_sha1=sha1, box_sha1=sha1.upper())
    assert not path.exists()
    assert os.listdir(path.parent) == []


def test_delete_refused_on_sha1_mismatch(tmp_path):
    path, ident, sha1 = _drop(tmp_path)
    with pytest.raises(SourceActionRefused, match="SHA-1"):
        apply_after_upload(AfterUpload.DELETE, path, "scan.pdf", hashed=ident, local_sha1=sha1, box_sha1="f" * 40)
    assert path.read_bytes() == b"payload"


def test_delete_refused_when_file_changed_after_hashing(tmp_path):
    path, ident, sha1 = _drop(tmp_path)
    with path.open("ab") as f:
        f.write(b" more")
    with pytest.raises(SourceActionRefused, match="changed"):
        apply_after_upload(AfterUpload.DELETE, path, "scan.pdf", hashed=ident, local_sha1=sha1, box_sha1=sha1)
    assert path.read_bytes() == b"payload more"


def test_move_to_dated_archive_without_overwriting(tmp_path):
    plan = ArchivePlan(tmp_path / "archive")
    first, ident, sha1 = _drop(tmp_path, "a/scan.pdf")
    target = apply_after_upload(AfterUpload.MOVE, first, "a/scan.pdf", hashed=ident, local_sha1=sha1, box_sha1=sha1, archive=plan, now=WHEN)
    assert target == (tmp_path / "archive/2026/11/21/a/scan.pdf").resolve()
    assert target.read_bytes() == b"payload" and not first.exists()
    second, ident2, sha2 = _drop(tmp_path, "a/scan.pdf", b"other")
    target2 = apply_after_upload(AfterUpload.MOVE, second, "a/scan.pdf", hashed=ident2, local_sha1=sha2, box_sha1=sha2, archive=plan, now=WHEN)
    assert target2.name == "scan (1).pdf" and target2.read_bytes() == b"other"
    assert target.read_bytes() == b"payload"


def test_archive_template_cannot_escape_archive_dir(tmp_path):
    plan = ArchivePlan(tmp_path / "archive", template="../../{name}")
    path, ident, sha1 = _drop(tmp_path)
    with pytest.raises(SourceActionRefused, match="outside"):
        apply_after_upload(AfterUpload.MOVE, path, "scan.pdf", hashed=ident, local_sha1=sha1, box_sha1=sha1, archive=plan, now=WHEN)
    assert path.exists()
