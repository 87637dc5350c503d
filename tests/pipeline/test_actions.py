import hashlib
import os
from pathlib import Path

import pytest

from syncd.pipeline.actions import AfterUpload, SourceActionRefused, apply_after_upload
from syncd.pipeline.scanner import FileStat

def _drop(tmp_path: Path, name: str = "scan.pdf", data: bytes = b"payload") -> tuple[Path, FileStat, str]:
    path = tmp_path / "inbox" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path, FileStat.from_stat(path.stat()), hashlib.sha1(data).hexdigest()


def test_keep_leaves_file(tmp_path):
    path, ident, sha1 = _drop(tmp_path)
    assert apply_after_upload(AfterUpload.KEEP, path, hashed=ident, local_sha1=sha1, box_sha1="0" * 40) is None
    assert path.exists()


def test_delete_after_verified_upload(tmp_path):
    path, ident, sha1 = _drop(tmp_path)
    apply_after_upload(AfterUpload.DELETE, path, hashed=ident, local_sha1=sha1, box_sha1=sha1.upper())
    assert not path.exists()
    assert os.listdir(path.parent) == []


def test_delete_refused_on_sha1_mismatch(tmp_path):
    path, ident, sha1 = _drop(tmp_path)
    with pytest.raises(SourceActionRefused, match="SHA-1"):
        apply_after_upload(AfterUpload.DELETE, path, hashed=ident, local_sha1=sha1, box_sha1="f" * 40)
    assert path.read_bytes() == b"payload"


def test_delete_refused_when_file_changed_after_hashing(tmp_path):
    path, ident, sha1 = _drop(tmp_path)
    with path.open("ab") as f:
        f.write(b" more")
    with pytest.raises(SourceActionRefused, match="changed"):
        apply_after_upload(AfterUpload.DELETE, path, hashed=ident, local_sha1=sha1, box_sha1=sha1)
    assert path.read_bytes() == b"payload more"


def test_move_to_archive_without_overwriting(tmp_path):
    target_path = tmp_path / "archive/2026/11/21/a/scan.pdf"
    first, ident, sha1 = _drop(tmp_path, "a/scan.pdf")
    target = apply_after_upload(AfterUpload.MOVE, first, hashed=ident, local_sha1=sha1, box_sha1=sha1, archive_target=target_path)
    assert target == target_path
    assert target.read_bytes() == b"payload" and not first.exists()
    second, ident2, sha2 = _drop(tmp_path, "a/scan.pdf", b"other")
    target2 = apply_after_upload(AfterUpload.MOVE, second, hashed=ident2, local_sha1=sha2, box_sha1=sha2, archive_target=target_path)
    assert target2.name == "scan (1).pdf" and target2.read_bytes() == b"other"
    assert target.read_bytes() == b"payload"


def test_move_without_target_is_refused(tmp_path):
    path, ident, sha1 = _drop(tmp_path)
    with pytest.raises(SourceActionRefused, match="archive"):
        apply_after_upload(AfterUpload.MOVE, path, hashed=ident, local_sha1=sha1, box_sha1=sha1)
    assert path.exists()
