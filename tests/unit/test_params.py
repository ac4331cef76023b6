"""Parameter lines (§1.4): task names, streaming records, duplicates, client-side param_file paths."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cigri.domain.errors import DuplicateTaskNames, JDLError
from cigri.domain.jdl import (
    ParamRecord,
    check_unique_task_names,
    duplicate_task_name_errors,
    parse_param_lines,
    resolve_param_file_path,
    task_name,
)


@pytest.mark.parametrize(("line", "expected"), [
    pytest.param("input.dat 1 2", "input.dat", id="first-word"),
    pytest.param("single", "single", id="one-word"),
    pytest.param("a\tb", "a", id="tab-separates"),
    pytest.param("", "", id="empty-line"),
    pytest.param("   ", "", id="blank-line"),
])
def test_task_name_is_the_first_word(line: str, expected: str) -> None:
    assert task_name(line) == expected


def test_records_strip_lines_and_keep_blank_ones_like_v3() -> None:
    records = list(parse_param_lines(["  a 1\n", "\n", "b 2\r\n"]))
    assert records == [ParamRecord(line_no=1, name="a", param="a 1"),
                       ParamRecord(line_no=2, name="", param=""),
                       ParamRecord(line_no=3, name="b", param="b 2")]


def test_records_stream() -> None:
    def endless() -> Iterator[str]:
        number = 0
        while True:
            number += 1
            yield f"t{number}"

    records = parse_param_lines(endless())
    assert next(records).name == "t1" and next(records).line_no == 2


@pytest.mark.parametrize(("lines", "expected"), [
    pytest.param(["a", "b\x00"], "parameter line 2: contains a NUL character", id="nul"),
    pytest.param(["y" * 256], "parameter line 1: task name 'yyyy", id="name-too-long"),
])
def test_lines_the_database_cannot_hold_are_refused_with_their_number(
        lines: list[str], expected: str) -> None:
    with pytest.raises(JDLError, match=expected):
        list(parse_param_lines(lines))


def test_duplicates_name_every_line() -> None:
    errors = duplicate_task_name_errors(parse_param_lines(["x 1", "y", "x 2", "x 3", "y"]))
    assert [error.split(" (")[0] for error in errors] == [
        "duplicate task name 'x': used by parameter lines 1, 3, 4",
        "duplicate task name 'y': used by parameter lines 2, 5"]


def test_duplicate_report_is_bounded() -> None:
    errors = duplicate_task_name_errors(parse_param_lines([f"n{i % 30}" for i in range(60)]),
                                        limit=5)
    assert len(errors) == 6 and errors[-1] == "... and 25 more duplicate task names"


def test_check_unique_task_names() -> None:
    assert check_unique_task_names(["a", "b"]) == 2
    with pytest.raises(DuplicateTaskNames, match="'a': used by parameter lines 1, 2"):
        check_unique_task_names(["a 1", "a 2"])


@pytest.mark.parametrize(("path", "expected"), [
    pytest.param("~/p.txt", "/home/alice/p.txt", id="tilde"),
    pytest.param("{HOME}/p.txt", "/home/alice/p.txt", id="home-macro"),
    pytest.param("$DATA/p.txt", "/srv/data/p.txt", id="variable"),
    pytest.param("${DATA}/p.txt", "/srv/data/p.txt", id="braced-variable"),
    pytest.param("relative.txt", "relative.txt", id="relative-stays-relative"),
])
def test_param_file_path_uses_the_submitters_home_and_environment(
        path: str, expected: str) -> None:
    assert resolve_param_file_path(path, home="/home/alice",
                                   environ={"DATA": "/srv/data"}) == expected


def test_param_file_path_with_an_undefined_variable() -> None:
    with pytest.raises(JDLError, match=r"param_file: environment variable \$NOPE is not defined"):
        resolve_param_file_path("$NOPE/p", home="/h", environ={})
