import pytest

from syncd.pipeline.names import MAX_NAME_LENGTH, name_problem, sanitize_name


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
