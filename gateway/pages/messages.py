"""What the services say of a form's fields or a CSV row (marshmallow's words, their own rules), in the visitor's
language: the API answers in English, the pages in the visitor's."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from flask_babel import gettext as _


def _messages() -> list[tuple[re.Pattern[str], Callable[[re.Match[str], Callable[[str], str]], str]]]:
    """What the ideas service (marshmallow, its rules) and the CSV reader say of a row, in the visitor's words."""
    rules: list[tuple[str, Callable[[re.Match[str], Callable[[str], str]], str]]] = [
        (r"Missing data for required field\.", lambda m, name: _("This must not be empty.")),
        (r"Length must be between (\d+) and (\d+)\.",
         lambda m, name: _("Between %(min)s and %(max)s characters, please.", min=m[1], max=m[2])),
        (r"Shorter than minimum length (\d+)\.", lambda m, name: _("At least %(min)s characters, please.", min=m[1])),
        (r"Longer than maximum length (\d+)\.", lambda m, name: _("At most %(max)s characters, please.", max=m[1])),
        (r"Must be one of: (.*)\.", lambda m, name: _("Must be one of: %(choices)s.", choices=m[1])),
        (r"Not a valid email address\.", lambda m, name: _("This is not an e-mail address.")),
        (r"Not a valid \w+\.", lambda m, name: _("This value cannot be read.")),
        (r"Unknown field\.", lambda m, name: _("Unknown column.")),
        (r"unknown theme '([^']*)'.*", lambda m, name: _("Unknown theme “%(theme)s”.", theme=m[1])),
        (r"choose a theme; .*", lambda m, name: _("Choose a theme")),
        (r"must be one line of plain text: (U\+[0-9A-F]{4,6} \(.*\)) at position (\d+) is not allowed here",
         lambda m, name: _("One line of plain text, please: %(char)s at position %(position)s is not allowed here.",
                           char=m[1], position=m[2])),
        (r"must be plain text: (U\+[0-9A-F]{4,6} \(.*\)) at position (\d+) is not allowed",
         lambda m, name: _("This text holds a character that is not allowed: %(char)s at position %(position)s.",
                           char=m[1], position=m[2])),
        (r"no participant with this e-mail address in (.+)",
         lambda m, name: _("No participant with this e-mail address in %(city)s.", city=name(m[1]))),
        (r"names another participant than author_id", lambda m, name: _("Names another participant than the author.")),
        (r"more cells than columns", lambda m, name: _("More cells than the header has columns.")),
        (r"two ideas of two partner cities are paired, not two of one city",
         lambda m, name: _("Two ideas of the two partner cities are paired, not two of one city.")),
        (r"idea \S+ is .*: only open ideas are paired",
         lambda m, name: _("One of the ideas is withdrawn or in a project: only open ideas are paired.")),
        (r"the two ideas are not of one partnership", lambda m, name: _("The two ideas are not of one partnership.")),
        (r"no idea .* here \(yet\)", lambda m, name: _("One of the ideas is unknown here (or not yet known).")),
        (r"say why: both sides are told", lambda m, name: _("Say why, please: both sides are told.")),
    ]
    return [(re.compile(pattern), say) for pattern, say in rules]


MESSAGES = _messages()


def in_words(message: str, city_name: Callable[[str], str]) -> str:
    """A row's error in the visitor's language (a message nobody translated yet stays as it came)."""
    for pattern, say in MESSAGES:
        found = pattern.fullmatch(message.strip())
        if found:
            return say(found, city_name)
    return message


def field_messages(messages: Any, city_name: Callable[[str], str]) -> list[str]:
    """A field's messages in the visitor's words; a list field's come per item ("Item 2: ..."), as the services
    send them (keyed by the item's position)."""
    if isinstance(messages, str):
        return [in_words(messages, city_name)]
    if isinstance(messages, list):
        return [said for message in messages for said in field_messages(message, city_name)]
    if isinstance(messages, dict):
        return [_("Item %(number)s: %(message)s", number=int(key) + 1, message=said) if str(key).isdigit()
                else f"{key}: {said}"
                for key, inner in messages.items() for said in field_messages(inner, city_name)]
    return [str(messages)]


def all_in_words(errors: Any, city_name: Callable[[str], str]) -> dict[str, list[str]]:
    """A service's `errors` (field -> messages) in the visitor's words."""
    if not isinstance(errors, dict):
        return {}
    return {field: field_messages(messages, city_name) for field, messages in errors.items()}
