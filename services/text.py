"""What text people may put into fields: one line for titles, names, tags and labels; lines for longer texts.

A title travels into e-mail subjects, CSV cells, webhook bodies and pages in two scripts. Characters that end a
line (U+0085 NEXT LINE, U+2028, U+2029 besides CR and LF), other control characters, bidirectional controls
(which reorder what a reader sees: "Trojan Source") and zero-width characters (which make two equal-looking
titles differ) have no place in one line of plain text, so single-line fields refuse them and say which
character, where. Longer texts keep their line breaks: every kind of line break is stored as "\\n".
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from marshmallow import ValidationError, fields

# Characters one line refuses: every control character (category Cc: C0, DEL and C1, U+0085 NEXT LINE among
# them), the line and paragraph separators (U+2028, U+2029), bidirectional controls, zero-width characters and
# lone surrogates. Other format characters (the soft hyphen, Arabic number signs...) are left alone.
BIDI_CONTROLS = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
ZERO_WIDTH = "\u180e\u200b-\u200d\u2060-\u2064\ufeff"
REFUSED = re.compile(f"[\\x00-\\x1f\\x7f-\\x9f\\u2028\\u2029{BIDI_CONTROLS}{ZERO_WIDTH}\\ud800-\\udfff]")
_REFUSED_RUNS = re.compile(REFUSED.pattern + "+")
ZWJ = "\u200d"  # allowed inside an emoji sequence (👩‍🔬): between two symbols it joins a picture, not words

# What str.splitlines() breaks on, beyond CR and LF: a longer text stores each as one "\n".
_OTHER_BREAKS = re.compile("\r\n|[\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")

_CONTROL_NAMES = {
    0x00: "NULL", 0x09: "CHARACTER TABULATION, a tab", 0x0A: "LINE FEED, a line break",
    0x0B: "LINE TABULATION", 0x0C: "FORM FEED", 0x0D: "CARRIAGE RETURN, a line break", 0x1B: "ESCAPE",
    0x7F: "DELETE", 0x85: "NEXT LINE, a line break",
}


def describe(char: str) -> str:
    """A character as a message names it: U+2028 (LINE SEPARATOR)."""
    code = ord(char)
    name = _CONTROL_NAMES.get(code) or unicodedata.name(char, "") or "a control character"
    return f"U+{code:04X} ({name})"


def _joins_emoji(value: str, at: int) -> bool:
    before = value[at - 1] if at > 0 else ""
    after = value[at + 1] if at + 1 < len(value) else ""
    if before == "\ufe0f" and at > 1:  # a variation selector between the picture and the joiner
        before = value[at - 2]
    return bool(before and after) and unicodedata.category(before) in ("So", "Sk") \
        and unicodedata.category(after) in ("So", "Sk")


def refused_in_line(value: str) -> tuple[int, str] | None:
    """(position, character) of the first character one line of plain text may not hold, or None."""
    for found in REFUSED.finditer(value):
        if found.group() == ZWJ and _joins_emoji(value, found.start()):
            continue
        return found.start(), found.group()
    return None


def refused_in_text(value: str) -> tuple[int, str] | None:
    """As refused_in_line, for a text of several lines (after its line breaks became "\\n"): tabs and line
    breaks are welcome there."""
    offset = 0
    for line in value.split("\n"):
        found = refused_in_line(line.replace("\t", " "))
        if found is not None:
            return offset + found[0], found[1]
        offset += len(line) + 1
    return None


class OneLine(fields.String):
    """A string field of one line of plain text (a title, name, tag, label): see the module's docstring."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        found = refused_in_line(text)
        if found is not None:
            at, char = found
            raise ValidationError(f"must be one line of plain text: {describe(char)} at position {at + 1} is "
                                  "not allowed here")
        return text


class Text(fields.String):
    """A string field of plain text that may have several lines (a description, interests). Every line break
    (CR LF, CR, U+2028, U+0085...) is stored as "\\n"; other control, bidirectional and zero-width characters are
    refused, naming the character."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = _OTHER_BREAKS.sub("\n", super()._deserialize(value, attr, data, **kwargs))
        found = refused_in_text(text)
        if found is not None:
            at, char = found
            raise ValidationError(f"must be plain text: {describe(char)} at position {at + 1} is not allowed")
        return text


def one_line(value: str) -> str:
    """`value` with every character a line refuses replaced by a space (for text that comes from elsewhere:
    an event of an older producer, a stored title): what goes into a header is one line whatever it holds."""
    return _REFUSED_RUNS.sub(" ", value)
