"""What text people may put into fields: one line for titles, names, tags and labels; lines for longer texts.

A title travels into e-mail subjects, CSV cells, webhook bodies and pages in two scripts. Characters that end a
line (U+0085 NEXT LINE, U+2028, U+2029 besides CR and LF), other control characters, bidirectional controls
(which reorder what a reader sees: "Trojan Source") and invisible characters (which make two equal-looking titles
differ, or hide text) have no place in one line of plain text, so single-line fields refuse them and say which
character, where; joiners and selectors that emoji and some scripts are written with stay. Longer texts keep their
line breaks: every kind of line break is stored as "\\n".
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from marshmallow import ValidationError, fields

# Characters one line refuses: every control character (category Cc: C0, DEL and C1, U+0085 NEXT LINE among
# them), the line and paragraph separators (U+2028, U+2029), bidirectional controls, every character Unicode calls
# default-ignorable (zero-width spaces and joiners, fillers, variation selectors, the tag characters that can hide
# text, invisible operators...), the interlinear annotation controls, noncharacters and lone surrogates. Other
# format characters (the soft hyphen, Arabic number signs) are left alone.
BIDI_CONTROLS = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
DEFAULT_IGNORABLE = ("\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u2060-\u206f\u3164"
                     "\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufffb\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
                     "\U000e0000-\U000e0fff")
NONCHARACTERS = "\ufdd0-\ufdef" + "".join(f"\\U{plane:04x}fffe\\U{plane:04x}ffff" for plane in range(17))
REFUSED = re.compile("[\\x00-\\x1f\\x7f-\\x9f\\u2028\\u2029\\ud800-\\udfff"
                     f"{BIDI_CONTROLS}{DEFAULT_IGNORABLE}{NONCHARACTERS}]")
_REFUSED_RUNS = re.compile(REFUSED.pattern + "+")
ZWJ, ZWNJ = "\u200d", "\u200c"
VARIATION = "\ufe0e\ufe0f"  # text and emoji presentation: "❤️" is U+2764 U+FE0F
# Where those are part of writing: a joiner between two pictures makes one (👩‍🔬), and between two letters of the
# scripts that shape with joiners (Arabic, Persian, the Indic scripts...: all from U+0590 on, Cyrillic and Latin
# before) changes how they join; a presentation selector follows a picture, a symbol or a keycap's digit.
_PICTURE = re.compile("[\u00a9\u00ae\u203c\u2049\u2122\u2139\u2194-\u21aa\u231a-\u23ff\u24c2\u25aa-\u27bf"
                      "\u2934\u2935\u2b05-\u2b55\u3030\u303d\u3297\u3299\U0001f000-\U0001faff]")  # emoji's blocks

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
    name = _CONTROL_NAMES.get(code) or unicodedata.name(char, "") or (
        "a control character" if unicodedata.category(char) == "Cc" else "an invisible or reserved character")
    return f"U+{code:04X} ({name})"


def _picture(char: str) -> bool:
    return bool(char) and _PICTURE.match(char) is not None


def _shaping_letter(char: str) -> bool:
    return bool(char) and ord(char) >= 0x0590 and unicodedata.category(char)[0] in "LM"


def _part_of_writing(value: str, at: int) -> bool:
    """Whether the joiner or selector at `at` belongs to an emoji or a script (see above), not hidden in text."""
    char = value[at]
    before = value[at - 1] if at > 0 else ""
    after = value[at + 1] if at + 1 < len(value) else ""
    if char in VARIATION:
        return _picture(before) or (before != "" and before in "0123456789#*")
    if before in VARIATION and at > 1:  # the selector of the picture before the joiner
        before = value[at - 2]
    if char == ZWJ and _picture(before) and _picture(after):
        return True
    return char in (ZWJ, ZWNJ) and _shaping_letter(before) and _shaping_letter(after)


def refused_in_line(value: str) -> tuple[int, str] | None:
    """(position, character) of the first character one line of plain text may not hold, or None."""
    for found in REFUSED.finditer(value):
        if found.group() in (ZWJ, ZWNJ, *VARIATION) and _part_of_writing(value, found.start()):
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


# The same rules for the API's description (a JSON Schema `pattern`: the characters of the Basic Multilingual Plane
# that are never welcome; joiners and selectors, allowed beside emoji and in shaping scripts, are left to the server).
LINE_PATTERN = r"^[^\x00-\x1f\x7f-\x9f\u2028\u2029\u061c\u200b\u200e\u200f\u202a-\u202e\u2060-\u206f\ufeff]*$"
TEXT_PATTERN = r"^[^\x00-\x08\x0e-\x1b\x1f\x7f-\x84\x86-\x9f\u061c\u200b\u200e\u200f\u202a-\u202e\u2060-\u206f\ufeff]*$"


class OneLine(fields.String):
    """A string field of one line of plain text (a title, name, tag, label): see the module's docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["metadata"] = {"pattern": LINE_PATTERN, **kwargs.get("metadata", {})}
        super().__init__(*args, **kwargs)

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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["metadata"] = {"pattern": TEXT_PATTERN, **kwargs.get("metadata", {})}
        super().__init__(*args, **kwargs)

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
