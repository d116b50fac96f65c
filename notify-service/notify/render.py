"""Messages from template files: `templates/<lang>/<name>.txt` (first line `Subject: ...`), HTML from the text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from services import text

TEMPLATES = Path(__file__).parent / "templates"

_text = Environment(loader=FileSystemLoader(TEMPLATES), undefined=StrictUndefined, autoescape=False,
                    keep_trailing_newline=True)
_html = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))


def render(name: str, lang: str, context: dict[str, Any], *, html: bool = True) -> tuple[str, str, str]:
    """(subject, plain text, HTML) of one message; the HTML is "" when not asked for (nothing will send it)."""
    rendered = _text.get_template(f"{lang}/{name}.txt").render(**_one_line(context))
    first, _, body = rendered.partition("\n")
    if not first.startswith("Subject:"):
        raise ValueError(f"template {lang}/{name}.txt must start with 'Subject: '")
    subject = first[len("Subject:"):].strip()
    text = body.lstrip("\n").rstrip() + "\n"
    return subject, text, _to_html(subject, text, lang) if html else ""


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
