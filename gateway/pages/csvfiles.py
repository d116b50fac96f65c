"""CSV in and out for coordinators: a workshop's ideas in (checked row by row), ideas, matches, projects out.

Pure functions: no I/O, no Flask. Spreadsheets differ (German Excel writes ';'), so the reader sniffs the
delimiter; the writer puts a BOM first so that Excel reads UTF-8, and defuses cells that a spreadsheet
would run as a formula.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

COLUMNS = ("title", "description", "theme", "tags", "seeks", "offers", "language", "author_email", "round")
REQUIRED = ("title", "theme")
MAX_ROWS = 500
# What the ideas service calls a field -> the CSV column a coordinator sees.
FIELD_TO_COLUMN = {"round_id": "round", "author_id": "author_email"}
TEMPLATE = (
    "title,description,theme,tags,seeks,offers,language,author_email,round\n"
    "Stadtgärten für alle,Gemeinschaftsgärten in beiden Städten,ecology-health,garden;climate,"
    "Partner in Krasnodar,Saatgut;Know-how,de,,\n"
)


class FileProblem(ValueError):
    """The file as a whole cannot be read (not the fault of one row)."""


@dataclass
class Row:
    line: int  # the line in the file (the header is line 1)
    values: dict[str, str]
    idea: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)


def _split(value: str, separators: str = ";\n") -> list[str]:
    parts = [value]
    for sep in separators:
        parts = [p for part in parts for p in part.split(sep)]
    return [p.strip() for p in parts if p.strip()]


def decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise FileProblem("encoding") from None


def read_ideas(text: str, themes: Mapping[str, str]) -> list[Row]:
    """Rows of a workshop CSV as ideas for POST /ideas/import; `themes` maps keys and labels (lower) to keys."""
    if not text.strip():
        raise FileProblem("empty")
    sample = text[:4096]
    try:
        dialect: Any = csv.Sniffer().sniff(sample.splitlines()[0], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text), dialect)
    try:
        header = [h.strip().lower() for h in next(reader)]
    except (StopIteration, csv.Error):
        raise FileProblem("empty") from None
    unknown = [h for h in header if h and h not in COLUMNS]
    if unknown:
        raise FileProblem("columns:" + ", ".join(unknown))
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise FileProblem("missing:" + ", ".join(missing))
    rows: list[Row] = []
    try:
        for record in reader:
            if not any(cell.strip() for cell in record):
                continue
            if len(rows) >= MAX_ROWS:
                raise FileProblem(f"rows:{MAX_ROWS}")
            line = reader.line_num
            values = {name: (record[i].strip() if i < len(record) else "") for i, name in enumerate(header) if name}
            row = Row(line, values)
            if len(record) > len(header) and any(c.strip() for c in record[len(header):]):
                row.errors.setdefault("title", []).append("more cells than columns")
            row.idea = _idea(values, themes)
            rows.append(row)
    except csv.Error:
        raise FileProblem("malformed") from None
    if not rows:
        raise FileProblem("empty")
    return rows


def _idea(values: Mapping[str, str], themes: Mapping[str, str]) -> dict[str, Any]:
    theme = values.get("theme", "")
    idea: dict[str, Any] = {
        "title": values.get("title", ""),
        "description": values.get("description", ""),
        "theme": themes.get(theme.lower(), theme),
        "tags": _split(values.get("tags", ""), ";,\n"),
        "seeks": _split(values.get("seeks", "")),
        "offers": _split(values.get("offers", "")),
    }
    if values.get("language"):
        idea["language"] = values["language"].lower()
    if values.get("author_email"):
        idea["author_email"] = values["author_email"]
    if values.get("round"):
        idea["round_id"] = values["round"]
    return idea


def attach_errors(rows: Sequence[Row], by_index: Mapping[str, Any]) -> None:
    """The service's per-row errors (by position) onto the rows, under the CSV's column names."""
    for index, errors in by_index.items():
        try:
            row = rows[int(index)]
        except (ValueError, IndexError):
            continue
        if isinstance(errors, dict):
            for name, messages in errors.items():
                column = FIELD_TO_COLUMN.get(name, name)
                # As the service said them (a list column's per item): the page puts them in the visitor's words.
                row.errors.setdefault(column, []).extend(messages if isinstance(messages, list) else [messages])
        else:
            row.errors.setdefault("title", []).append(str(errors))


# --- out ---------------------------------------------------------------------------------------------------

FORMULA_START = frozenset("=+-@\t\r\n\uff1d\uff0b\uff0d\uff20")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        value = "; ".join(str(v) for v in value)
    text = str(value)
    # A cell that starts like a formula is run by spreadsheets (CSV injection): make it plain text. Spreadsheets
    # in East Asian locales also take the full-width signs (＝ ＋ － ＠) for formulas.
    if text[:1] in FORMULA_START:
        text = "'" + text
    return text


def write(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([_cell(v) for v in row])
    return out.getvalue()


IDEA_HEADER = ("id", "city", "title", "description", "theme", "tags", "seeks", "offers", "language", "status",
               "author_id", "round", "created_at")
MATCH_HEADER = ("id", "kind", "status", "score", "city_a", "idea_a", "title_a", "answer_a", "city_b", "idea_b",
                "title_b", "answer_b", "reasons", "created_at")
PROJECT_HEADER = ("id", "title", "cities", "idea_ids", "members", "match_id", "created_at")


def idea_rows(ideas: Iterable[Mapping[str, Any]]) -> Iterable[list[Any]]:
    for i in ideas:
        yield [i.get("id"), i.get("city"), i.get("title"), i.get("description"), i.get("theme"), i.get("tags"),
               i.get("seeks"), i.get("offers"), i.get("language"), i.get("status"), i.get("author_id"),
               i.get("round_id"), i.get("created_at")]


def match_rows(matches: Iterable[Mapping[str, Any]], lang: str) -> Iterable[list[Any]]:
    for m in matches:
        sides = list(m.get("sides") or []) + [{}, {}]
        a, b = sides[0], sides[1]
        reasons = [r.get("text", {}).get(lang) or r.get("text", {}).get("en", "") for r in m.get("reasons") or []]
        yield [m.get("id"), m.get("kind"), m.get("status"), m.get("score"),
               a.get("city"), a.get("idea_id") or a.get("participant_id"), a.get("title"), a.get("answer"),
               b.get("city"), b.get("idea_id") or b.get("participant_id"), b.get("title"), b.get("answer"),
               reasons, m.get("created_at")]


def project_rows(projects: Iterable[Mapping[str, Any]]) -> Iterable[list[Any]]:
    for p in projects:
        cities = list(dict.fromkeys(s.get("city") for s in p.get("sides") or []))
        yield [p.get("id"), p.get("title"), cities, p.get("idea_ids"), len(p.get("members") or []),
               p.get("match_id"), p.get("created_at")]
