"""The web pages' words: every text of the code and templates is translated into German and Russian, with the
same placeholders, and the compiled .mo files (committed, read at run time) match their .po sources."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

PAGES = Path(__file__).resolve().parents[2] / "gateway" / "pages"
CATALOGS = PAGES / "translations"
PLACEHOLDER = re.compile(r"%\(\w+\)s")


def source_messages() -> set[str]:
    method_map = [("**.py", "python"), ("**/templates/**.html", "jinja2")]
    keywords = {"_": None, "gettext": None, "lazy_gettext": None, "ngettext": (1, 2)}
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(str(PAGES), method_map,
                                                                        keywords=keywords):
        found.add(message if isinstance(message, str) else message[0])
    return found


def _entries(messages: Iterable[Any]) -> dict[Any, tuple[str, ...]]:
    """msgid (a plural's: its singular and plural) -> its translations (a plural's: every form the language has)."""
    def frozen(value: Any) -> Any:
        return value if isinstance(value, str) else tuple(value)

    return {frozen(m.id): (m.string,) if isinstance(m.string, str) else tuple(m.string) for m in messages if m.id}


@pytest.mark.parametrize("lang", ["de", "ru"])
def test_every_text_is_translated_with_the_same_placeholders(lang):
    with open(CATALOGS / lang / "LC_MESSAGES" / "messages.po", "rb") as f:
        catalog = read_po(f, locale=lang)
    translated = {(key if isinstance(key, str) else key[0]): forms for key, forms in _entries(catalog).items()}
    forms_wanted = catalog.num_plurals
    wanted = source_messages()
    missing = sorted(m for m in wanted if not all(translated.get(m, ("",))))
    assert not missing, f"untranslated in {lang} (run scripts/i18n, then translate): {missing}"
    for msgid in wanted:
        forms = translated[msgid]
        assert len(forms) in (1, forms_wanted), (msgid, forms)
        for form in forms:
            assert set(PLACEHOLDER.findall(form)) <= set(PLACEHOLDER.findall(msgid)) | {"%(num)s"}, msgid
        if len(forms) == 1:
            assert sorted(PLACEHOLDER.findall(msgid)) == sorted(PLACEHOLDER.findall(forms[0])), msgid


@pytest.mark.parametrize("lang", ["de", "ru"])
def test_compiled_catalog_matches_its_source(lang):
    folder = CATALOGS / lang / "LC_MESSAGES"
    with open(folder / "messages.po", "rb") as f:
        source = _entries(read_po(f, locale=lang))
    with open(folder / "messages.mo", "rb") as f:
        compiled = _entries(read_mo(f))
    assert compiled == source, "the .mo is stale: run scripts/i18n compile"
