"""Box names: Box's rules, names that are not UTF-8, clash keys, safe display (examples and properties)."""

from __future__ import annotations

import errno
import os
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.pipeline.names import (
    MAX_NAME_LENGTH,
    BoxName,
    InvalidNamePolicy,
    NameRefused,
    box_name,
    box_name_key,
    box_path,
    box_path_key,
    decode_legacy,
    display_path,
    is_valid_utf8,
    name_problem,
    parse_display_path,
    sanitize_name,
    utf16_length,
)


@pytest.mark.parametrize(
    "name",
    ["report.pdf", " leading-space.txt", "a" * 255, "ünïcödé 文件.txt", "x<y>:z|?*-.txt"],
)
def test_names_box_accepts(name):
    assert name_problem(name) is None


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("", "empty"),
        ("a" * 256, "256 characters"),
        (".", "reserved"),
        ("..", "reserved"),
        ("a\\b", "'\\\\'"),
        ("tab\there", "non-printable"),
        ("trailing ", "ends with a space"),
    ],
)
def test_names_box_rejects_say_why(name, fragment):
    problem = name_problem(name)
    assert problem is not None and fragment in problem


@pytest.mark.parametrize(
    "name", ["a\\b", "tab\there", "trailing  ", "..", ".", "", "b" * 300 + ".jpeg", "c" * 300]
)
def test_sanitized_names_are_accepted(name):
    cleaned = sanitize_name(name)
    assert name_problem(cleaned) is None
    assert len(cleaned) <= MAX_NAME_LENGTH


def test_sanitize_keeps_extension_of_long_names():
    assert sanitize_name("b" * 300 + ".jpeg").endswith(".jpeg")
    assert sanitize_name("ok.txt") == "ok.txt"


# ------------------------------------------------------ hostile names, Box names


LATIN1_CAFE = os.fsdecode(b"caf\xe9.txt")  # what os.listdir gives for a Latin-1 name on disk


def test_a_latin1_name_is_not_utf8_and_is_quarantined_with_a_readable_reason() -> None:
    assert not is_valid_utf8(LATIN1_CAFE)
    refused = box_name(LATIN1_CAFE, InvalidNamePolicy.QUARANTINE)
    assert isinstance(refused, NameRefused)
    assert refused.reason == "name is not valid UTF-8: caf\\xe9.txt"
    assert name_problem(LATIN1_CAFE) == refused.reason


@pytest.mark.parametrize(("raw", "expected"), [
    (b"caf\xe9.txt", "café.txt"),
    (b"\x80 price.txt", "€ price.txt"),  # 0x80 is the euro sign in Windows-1252
    (b"na\xefve r\xe9sum\xe9.doc", "naïve résumé.doc"),
    (b"ok-\xc3\xa9-then-\xe9.txt", "ok-é-then-é.txt"),  # valid UTF-8 parts are kept as they are
    (b"gap\x81\x8d\x8f\x90\x9d.txt", "gap_____.txt"),  # cp1252's five gaps: Latin-1 C1 controls, then _
])
def test_sanitize_reads_bytes_that_are_not_utf8_as_windows_1252(raw: bytes, expected: str) -> None:
    mapped = box_name(os.fsdecode(raw), "sanitize")
    assert isinstance(mapped, BoxName) and mapped.name == expected and mapped.renamed
    assert decode_legacy(os.fsdecode(b"caf\xe9")) == "café"


@pytest.mark.parametrize(("name", "policy", "outcome"), [
    ("report.pdf", "quarantine", "report.pdf"),
    ("trailing. ", "sanitize", "trailing."),
    ("trailing.", "quarantine", "trailing."),  # a trailing dot is Windows' rule, not Box's
    ("  leading.txt", "quarantine", "  leading.txt"),
    ("a\\b.txt", "sanitize", "a_b.txt"),
    ("tab\there", "sanitize", "tab_here"),
    ("bidi\u202eexe.txt", "sanitize", "bidi_exe.txt"),
])
def test_box_rules_for_hostile_names(name: str, policy: str, outcome: str) -> None:
    mapped = box_name(name, policy)
    assert isinstance(mapped, BoxName) and mapped.name == outcome
    assert name_problem(mapped.name) is None


@pytest.mark.parametrize(("name", "fragment"), [
    ("trailing ", "ends with a space"), ("a\\b", "'\\\\'"), ("..", "reserved"), ("bell\x07", "non-printable"),
])
def test_quarantine_says_which_box_rule(name: str, fragment: str) -> None:
    refused = box_name(name, "quarantine")
    assert isinstance(refused, NameRefused) and refused.reason.startswith("Box cannot take this name: ")
    assert fragment in refused.reason


def test_names_of_255_bytes_exist_on_disk_and_300_bytes_cannot(tmp_path: Path) -> None:
    longest = "n" * 251 + ".txt"
    (tmp_path / longest).write_bytes(b"x")
    assert box_name(longest, "quarantine") == BoxName(longest, longest)
    multibyte = "é" * 125 + ".txt"  # 254 bytes on disk, 129 characters for Box
    (tmp_path / multibyte).write_bytes(b"x")
    assert name_problem(multibyte) is None
    # Linux refuses a single name over 255 bytes, so a 300-byte *name* can never reach syncd;
    # a 300-byte relative *path* across folders can (see test_source), and each part is short.
    with pytest.raises(OSError) as info:
        (tmp_path / ("n" * 296 + ".txt")).write_bytes(b"x")
    assert info.value.errno == errno.ENAMETOOLONG
    assert all(isinstance(p, BoxName) for p in box_path("d" * 100 + "/" + "e" * 100 + "/" + "f" * 98, "quarantine"))


def test_box_length_counts_utf16_units() -> None:
    assert utf16_length("a\U0001F600") == 3
    assert name_problem("\U0001F600" * 128) is not None  # 128 characters, 256 UTF-16 units
    assert utf16_length(sanitize_name("\U0001F600" * 200)) <= MAX_NAME_LENGTH


def test_box_path_maps_every_folder_and_names_the_one_refused() -> None:
    mapped = box_path("In\\box/caf\xe9.txt", "sanitize")
    assert isinstance(mapped, tuple) and [n.name for n in mapped] == ["In_box", "café.txt"]
    refused = box_path(os.fsdecode(b"sub\xff/ok.txt"), "quarantine")
    assert isinstance(refused, NameRefused) and refused.reason == "folder sub\\xff: name is not valid UTF-8: sub\\xff"


@pytest.mark.parametrize(("first", "second"), [
    ("Report.pdf", "report.pdf"),
    ("REPORT.PDF", "report.pdf"),
    ("caf\u00e9.txt", "cafe\u0301.txt"),  # NFC and NFD spellings of é
    ("Stra\u00dfe.txt", "STRASSE.txt"),  # full case folding: ß is ss
    ("\u212bngstr\u00f6m", "\u00c5ngstr\u00f6m"),  # the Angstrom sign is canonically Å
])
def test_names_that_are_one_name_in_box_share_a_key(first: str, second: str) -> None:
    assert box_name_key(first) == box_name_key(second)


def test_names_that_become_one_once_sanitised_share_a_key() -> None:
    left, right = box_name("a\\b", "sanitize"), box_name("a_b", "sanitize")
    assert isinstance(left, BoxName) and isinstance(right, BoxName)
    assert box_name_key(left.name) == box_name_key(right.name)
    latin1, real = box_name(LATIN1_CAFE, "sanitize"), box_name("CAFÉ.TXT", "sanitize")
    assert box_path_key((latin1,)) == box_path_key((real,))  # type: ignore[arg-type]
    assert box_path_key(("Docs", "a.txt")) == box_path_key(("docs", "A.TXT"))
    assert box_name_key("report.pdf") != box_name_key("report.pdf.bak")


@pytest.mark.parametrize("relpath", [
    LATIN1_CAFE, "plain/path.txt", "back\\slash", "new\nline", "\u202eevil", "caf\u00e9", "\x85nel",
    os.fsdecode(b"\x85raw"), "\\xe9 literally", "emoji \U0001F600",
])
def test_display_path_is_printable_and_reversible(relpath: str) -> None:
    shown = display_path(relpath)
    assert shown.isprintable() and is_valid_utf8(shown)
    assert parse_display_path(shown) == relpath


def test_display_path_examples() -> None:
    assert display_path(LATIN1_CAFE) == "caf\\xe9.txt"
    assert display_path("a\\b") == "a\\\\b"
    assert display_path("x\ny") == "x\\u000ay"
    assert display_path("café/naïve.txt") == "café/naïve.txt"
    with pytest.raises(ValueError):
        parse_display_path("bad \\q escape")


# ---------------------------------------------------------------- properties

# Names as os.fsdecode gives them: any bytes but NUL and '/', 1-255 long.
disk_names = st.binary(min_size=1, max_size=255).filter(lambda b: b"\x00" not in b and b"/" not in b).map(
    os.fsdecode)
any_text = st.text(min_size=0, max_size=400)


@settings(max_examples=300, deadline=None)
@given(st.one_of(disk_names, any_text))
def test_sanitized_names_are_box_valid_short_and_stable(name: str) -> None:
    cleaned = sanitize_name(name)
    assert name_problem(cleaned) is None, (name, cleaned)
    assert len(cleaned) <= MAX_NAME_LENGTH and utf16_length(cleaned) <= MAX_NAME_LENGTH
    assert sanitize_name(cleaned) == cleaned


@settings(max_examples=300, deadline=None)
@given(st.one_of(disk_names, any_text))
def test_name_key_ignores_case_and_normalisation(name: str) -> None:
    key = box_name_key(name)
    assert box_name_key(unicodedata.normalize("NFC", name)) == key
    assert box_name_key(unicodedata.normalize("NFD", name)) == key
    assert box_name_key(name.casefold()) == key
    assert box_name_key(key) == key


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=50))
def test_ascii_names_differing_only_in_case_share_a_key(name: str) -> None:
    assert box_name_key(name.upper()) == box_name_key(name.lower())


@settings(max_examples=300, deadline=None)
@given(disk_names, st.sampled_from(list(InvalidNamePolicy)))
def test_every_name_on_disk_gets_a_valid_box_name_or_a_reason(name: str, policy: InvalidNamePolicy) -> None:
    mapped = box_name(name, policy)
    if isinstance(mapped, BoxName):
        assert name_problem(mapped.name) is None
    else:
        assert policy is InvalidNamePolicy.QUARANTINE and mapped.reason and is_valid_utf8(mapped.reason)
