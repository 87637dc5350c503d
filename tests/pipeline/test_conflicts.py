import pytest

from syncd.box import BoxAPIError, UploadedFile
from syncd.pipeline.conflicts import ConflictOutcome, candidate_names, upload_with_policy


def _conflict(item_type="file", item_id="77", array=False):
    conflict = {"type": item_type, "id": item_id, "sha1": "ab" * 20, "name": "x"}
    return BoxAPIError(409, "item_name_in_use", "Item with the same name already exists",
                       context_info={"conflicts": [conflict] if array else conflict})


class FakeBox:
    """Pure stand-in for one folder: names taken, and what got uploaded where."""

    def __init__(self, taken=(), folder_names=()):
        self.taken = set(taken)
        self.folders = set(folder_names)
        self.calls = []

    def upload(self, name, existing_id):
        self.calls.append((name, existing_id))
        if existing_id is None and name in self.folders:
            raise _conflict("folder", "5", array=True)
        if existing_id is None and name in self.taken:
            raise _conflict()
        return UploadedFile(existing_id or "new", "v", "cd" * 20, 1, "1", name)


def test_candidate_names_keep_the_extension():
    assert list(candidate_names("a.pdf", "rename"))[:3] == ["a.pdf", "a (1).pdf", "a (2).pdf"]
    assert list(candidate_names("README", "rename"))[1] == "README (1)"
    assert list(candidate_names("a.pdf", "version")) == ["a.pdf"]


def test_version_uploads_to_the_conflicting_file():
    box = FakeBox(taken={"a.pdf"})
    result = upload_with_policy(box.upload, "a.pdf", "version")
    assert isinstance(result, UploadedFile) and result.file_id == "77"
    assert box.calls == [("a.pdf", None), ("a.pdf", "77")]


def test_rename_takes_the_first_free_name():
    box = FakeBox(taken={"a.pdf", "a (1).pdf"})
    result = upload_with_policy(box.upload, "a.pdf", "rename")
    assert isinstance(result, UploadedFile) and result.name == "a (2).pdf"


def test_skip_and_fail_report_the_conflict():
    skipped = upload_with_policy(FakeBox(taken={"a.pdf"}).upload, "a.pdf", "skip")
    assert skipped == ConflictOutcome(True, "Box already has a file named 'a.pdf' (id 77)")
    failed = upload_with_policy(FakeBox(taken={"a.pdf"}).upload, "a.pdf", "fail")
    assert isinstance(failed, ConflictOutcome) and not failed.skipped and "'fail'" in failed.reason


def test_a_folder_in_the_way_cannot_be_versioned():
    result = upload_with_policy(FakeBox(folder_names={"a.pdf"}).upload, "a.pdf", "version")
    assert isinstance(result, ConflictOutcome) and "a folder" in result.reason


def test_known_file_goes_straight_to_a_new_version_and_other_errors_propagate():
    box = FakeBox(taken={"a.pdf"})
    assert upload_with_policy(box.upload, "a.pdf", "fail", existing_file_id="9").file_id == "9"

    def broken(name, existing):
        raise BoxAPIError(503, "unavailable", "down")

    with pytest.raises(BoxAPIError):
        upload_with_policy(broken, "a.pdf", "rename")
    with pytest.raises(ValueError):
        upload_with_policy(box.upload, "a.pdf", "merge")


@pytest.mark.parametrize("policy", ["skip", "rename", "fail", "version"])
def test_a_file_uploaded_by_an_earlier_attempt_gets_a_version_whatever_the_policy(policy):
    # A superseded attempt of this file committed "a.pdf" (id 77): no skip, no "a (1).pdf", no failure.
    box = FakeBox(taken={"a.pdf"})
    decisions = []
    result = upload_with_policy(box.upload, "a.pdf", policy, ours=lambda file_id: file_id == "77",
                                on_decision=lambda decision, reason: decisions.append((decision, reason)))
    assert isinstance(result, UploadedFile) and result.file_id == "77"
    assert box.calls == [("a.pdf", None), ("a.pdf", "77")]
    assert decisions == [("version", "Box already has a file named 'a.pdf' (id 77), uploaded by an earlier "
                                     "attempt of this file")]
    other = upload_with_policy(FakeBox(taken={"a.pdf"}).upload, "a.pdf", "skip", ours=lambda file_id: False)
    assert isinstance(other, ConflictOutcome) and other.skipped
