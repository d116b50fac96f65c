"""What one line of plain text may hold (titles, names, tags, labels), and a longer text (descriptions)."""

from __future__ import annotations

import pytest
from marshmallow import Schema, ValidationError

from services.text import OneLine, Text, one_line, refused_in_line

REFUSED = {
    "\x85": "U+0085 (NEXT LINE, a line break)",
    "\u2028": "U+2028 (LINE SEPARATOR)",
    "\u2029": "U+2029 (PARAGRAPH SEPARATOR)",
    "\n": "U+000A (LINE FEED, a line break)",
    "\r": "U+000D (CARRIAGE RETURN, a line break)",
    "\t": "U+0009 (CHARACTER TABULATION, a tab)",
    "\x00": "U+0000 (NULL)",
    "\x1b": "U+001B (ESCAPE)",
    "\x9b": "U+009B (a control character)",
    "\u202a": "U+202A (LEFT-TO-RIGHT EMBEDDING)",
    "\u202e": "U+202E (RIGHT-TO-LEFT OVERRIDE)",
    "\u2066": "U+2066 (LEFT-TO-RIGHT ISOLATE)",
    "\u2069": "U+2069 (POP DIRECTIONAL ISOLATE)",
    "\u200e": "U+200E (LEFT-TO-RIGHT MARK)",
    "\u200b": "U+200B (ZERO WIDTH SPACE)",
    "\u200c": "U+200C (ZERO WIDTH NON-JOINER)",
    "\u200d": "U+200D (ZERO WIDTH JOINER)",
    "\u2060": "U+2060 (WORD JOINER)",
    "\ufeff": "U+FEFF (ZERO WIDTH NO-BREAK SPACE)",
    "\U000e0041": "U+E0041 (TAG LATIN CAPITAL LETTER A)",  # tag characters hide text
    "\ufe0f": "U+FE0F (VARIATION SELECTOR-16)",  # after a letter: nothing to select
    "\U000e0100": "U+E0100 (VARIATION SELECTOR-17)",
    "\u034f": "U+034F (COMBINING GRAPHEME JOINER)",
    "\u3164": "U+3164 (HANGUL FILLER)",
    "\u17b4": "U+17B4 (KHMER VOWEL INHERENT AQ)",
    "\u2065": "U+2065 (an invisible or reserved character)",
    "\ufff9": "U+FFF9 (INTERLINEAR ANNOTATION ANCHOR)",
    "\U0001d173": "U+1D173 (MUSICAL SYMBOL BEGIN BEAM)",
    "\ufffe": "U+FFFE (an invisible or reserved character)",
}


class Card(Schema):
    title = OneLine(required=True)
    description = Text()


@pytest.mark.parametrize("char", sorted(REFUSED))
def test_one_line_refuses_the_character_and_names_it_and_its_place(char: str):
    with pytest.raises(ValidationError) as refused:
        Card().load({"title": f"Radtour{char}Karlsruhe"})
    [message] = refused.value.messages["title"]
    assert REFUSED[char] in message and "position 8" in message, message


@pytest.mark.parametrize("title", [
    "Radtour Karlsruhe–Krasnodar", "Городской сад «Зелёный двор»", "Fête de la musique à Nancy",
    "Straße\u00a0der Partnerschaft",  # a no-break space is a space
    "Café ☕ & Kuchen", "Wissenschaft 👩\u200d🔬 für alle", "Familie 👨\u200d👩\u200d👧", "Teilen ❤\ufe0f\u200d🔥",
    "Ко\u0301фе",  # a combining accent
    "Kreis\u00adlauf",  # a soft hyphen: a format character, but not an invisible trick
    "❤\ufe0f Herz", "1\ufe0f\u20e3 Platz", "🏳\ufe0f\u200d🌈", "👍🏽 gut",  # presentation, keycap, flag, skin tone
    "می\u200cخواهم", "क्\u200dष",  # Persian and Devanagari are written with joiners
])
def test_one_line_takes_what_people_write(title: str):
    assert Card().load({"title": title})["title"] == title


def test_joiners_and_selectors_are_refused_where_they_join_or_select_nothing():
    assert refused_in_line("Kar\u200dlsruhe") == (3, "\u200d"), "Latin letters are not joined"
    assert refused_in_line("Крас\u200cнодар") == (4, "\u200c"), "nor Cyrillic ones"
    assert refused_in_line("→\u200d→") == (1, "\u200d"), "arrows make no picture together"
    assert refused_in_line("\ufe0fstart") == (0, "\ufe0f"), "a selector of nothing"


def test_a_longer_text_stores_every_kind_of_line_break_as_one_newline():
    text = "eins\r\nzwei\rdrei\u2028vier\x85fünf\u2029sechs\x0bsieben\tacht"
    loaded = Card().load({"title": "x" * 3, "description": text})
    assert loaded["description"] == "eins\nzwei\ndrei\nvier\nfünf\nsechs\nsieben\tacht"


@pytest.mark.parametrize("char", ["\x00", "\x1b", "\u202e", "\u200b"])
def test_a_longer_text_refuses_other_invisible_characters_naming_the_place(char: str):
    with pytest.raises(ValidationError) as refused:
        Card().load({"title": "Garten", "description": f"erste Zeile\nzwei{char}te"})
    [message] = refused.value.messages["description"]
    assert "position 17" in message and message.startswith("must be plain text: U+"), message


def test_one_line_makes_anything_fit_a_header():
    assert one_line("Radtour\x85Bcc: evil@example.org\u2028\u202eX") == "Radtour Bcc: evil@example.org X"
