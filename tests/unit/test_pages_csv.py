"""CSV out of the coordinators' pages: no cell can run as a formula in a spreadsheet (CSV injection)."""

from __future__ import annotations

import csv
import io

import pytest

from gateway.pages import csvfiles


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r", "\n", "＝", "＋", "－", "＠"])
def test_a_cell_that_starts_like_a_formula_is_plain_text(start):
    value = f"{start}HYPERLINK(\"http://evil.example\",\"click\")"
    out = csvfiles.write(["title"], [[value]])
    cell = next(csv.reader(io.StringIO(out.lstrip("\ufeff").split("\r\n", 1)[1])))[0]
    assert cell == "'" + value


def test_ordinary_text_numbers_and_lists_are_unchanged():
    out = csvfiles.write(["a", "b", "c", "d"], [["Радтур", 0.82, ["bike", "=x"], None]])
    assert out.lstrip("\ufeff").split("\r\n")[1] == "Радтур,0.82,bike; =x,"
