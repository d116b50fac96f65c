"""Messages from template files: `templates/<lang>/<name>.txt`, HTML from the text.

A template starts with its headers: `Subject: ...`, then (for a notification) `Line: ...`, the one line an inbox
shows of it ("Anna Smirnova (Krasnodar): Wann treffen wir uns?"); then an empty line and the plain-text body.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from services import text

TEMPLATES = Path(__file__).parent / "templates"

_text = Environment(loader=FileSystemLoader(TEMPLATES), undefined=StrictUndefined, autoescape=False,
                    keep_trailing_newline=True)
_html = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))


class Rendered(NamedTuple):
    subject: str
    text: str
    html: str  # "" when not asked for
    line: str  # what happened, on one line (the subject when the template says no `Line:`)


def render(name: str, lang: str, context: dict[str, Any], *, html: bool = True) -> Rendered:
    """Subject, plain text, HTML and inbox line of one message; the HTML is "" when not asked for (nothing will send
    it)."""
    rendered = _text.get_template(f"{lang}/{name}.txt").render(**_one_line(context))
    first, _, body = rendered.partition("\n")
    if not first.startswith("Subject:"):
        raise ValueError(f"template {lang}/{name}.txt must start with 'Subject: '")
    subject = first[len("Subject:"):].strip()
    line = ""
    second, _, rest = body.partition("\n")
    if second.startswith("Line:"):
        line, body = second[len("Line:"):].strip(), rest
    text = body.lstrip("\n").rstrip() + "\n"
    return Rendered(subject, text, _to_html(subject, text, lang) if html else "", line or subject)


def _one_line(value: Any, key: str = "") -> Any:
    """Every string of the context on one line: a title with a line break must not end the subject early or
    start a line of the mail that looks like a header (the ideas service refuses them; events from elsewhere).
    The exception is a digest item's `text`, which notify writes itself in lines (reasons, then the link)."""
    if isinstance(value, str):
        return value if key in _MULTILINE else text.one_line(value)
    if isinstance(value, dict):
        return {k: _one_line(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_one_line(v) for v in value]
    return value


_MULTILINE = {"text"}


def _to_html(subject: str, text: str, lang: str) -> str:
    """Paragraphs and "- " lists of the text become HTML (escaped: titles are user input)."""
    blocks: list[dict[str, Any]] = []
    for paragraph in text.strip().split("\n\n"):
        lines = [line for line in paragraph.splitlines() if line.strip()]
        if lines and set(lines[0].strip()) == {"-"}:  # a line of dashes separates digest items
            blocks.append({"rule": True, "bullets": None, "text": ""})
            lines = lines[1:]
        if not lines:
            continue
        if all(line.lstrip().startswith("- ") for line in lines):
            blocks.append({"bullets": [line.lstrip()[2:] for line in lines]})
        else:
            blocks.append({"text": " ".join(lines), "bullets": None})
    return _html.get_template("layout.html").render(subject=subject, blocks=blocks, lang=lang)
