"""The notify service's message templates: every message in de, ru and en, complete and well-formed.

Translators edit `notify-service/notify/templates/<lang>/<name>.txt`: the first line is `Subject: ...`, then (in
every notification) `Line: ...`, the one line an inbox shows of it, then one empty line, then the plain-text body.
These tests render each file with sample values (German and Cyrillic, as real titles and names are) and check what
a reader and the sender rely on.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from jinja2 import Environment, FileSystemLoader, StrictUndefined, meta

TEMPLATES = Path(__file__).resolve().parents[2] / "notify-service" / "notify" / "templates"
LANGUAGES = ("de", "ru", "en")

# Each template and the variables it is rendered with (and must use: every language tells the same).
VARIABLES: dict[str, set[str]] = {
    "match_proposed": {"recipient_name", "own_title", "other_title", "other_city", "score_percent", "reasons",
                       "link", "unsubscribe_url"},
    "interest_match": {"recipient_name", "idea_title", "idea_city", "reasons", "link", "unsubscribe_url"},
    "interested_person": {"recipient_name", "own_title", "person_city", "reasons", "link", "unsubscribe_url"},
    "match_accepted": {"recipient_name", "own_title", "other_title", "other_city", "link", "unsubscribe_url"},
    "match_declined": {"recipient_name", "own_title", "other_title", "other_city", "unsubscribe_url"},
    "match_withdrawn": {"recipient_name", "own_title", "other_title", "other_city", "by_city", "reason",
                        "unsubscribe_url"},
    "project_formed": {"recipient_name", "project_title", "partner_cities", "link", "unsubscribe_url"},
    "project_updated": {"recipient_name", "project_title", "status", "status_changed", "steps_changed", "next_steps",
                        "by_city", "link", "unsubscribe_url"},
    "project_member_joined": {"recipient_name", "project_title", "person_name", "person_city", "via", "link",
                              "unsubscribe_url"},
    "project_message": {"recipient_name", "project_title", "author_name", "author_city", "excerpt", "message_lines",
                        "link", "unsubscribe_url"},
    "project_join_requested": {"recipient_name", "project_title", "person_name", "person_city", "message_lines",
                               "link", "unsubscribe_url"},
    "project_join_answered": {"recipient_name", "project_title", "accepted", "by_city", "link", "unsubscribe_url"},
    "meeting_proposed": {"recipient_name", "project_title", "meeting_title", "proposer_name", "proposer_city",
                         "duration_minutes", "slots", "zone", "link", "unsubscribe_url"},
    "meeting_scheduled": {"recipient_name", "project_title", "meeting_title", "when", "duration_minutes",
                          "video_link", "zone", "moved", "link", "unsubscribe_url"},
    "digest": {"recipient_name", "day", "items", "unsubscribe_url"},
    # Asked for by the person (web sign-in): no unsubscribe footer, it is not a notification.
    "sign_in": {"recipient_name", "link", "minutes"},
    "round_closing_soon": {"recipient_name", "round_name", "collect_until", "workshop", "link", "unsubscribe_url"},
    "round_results": {"recipient_name", "round_name", "link", "unsubscribe_url"},
    # Someone who is no participant yet: no unsubscribe footer either.
    "invitation": {"recipient_name", "link", "days", "city_name"},
    "signup_confirm": {"recipient_name", "link", "days", "city_name"},
    "signup_approved": {"recipient_name", "link", "city_name"},
    "signup_declined": {"recipient_name", "city_name"},
}
TITLES = ("own_title", "other_title", "idea_title", "project_title", "meeting_title")
# Every notification says in one line what happened (an inbox shows it); a digest and a sign-in mail are no news.
WITHOUT_LINE = ("digest", "sign_in")
QUOTES = {"de": ("„", "“"), "ru": ("«", "»"), "en": ("“", "”")}
DASHES = "-" * 10

SAMPLE = {
    "moved": False,
    "round_name": "Twin City Lab 2027",
    "collect_until": "10. Dezember 2026",
    "workshop": "Sa., 12. Dez. 2026, 10:00 MEZ",
    "days": 14,
    "city_name": "Karlsruhe",
    "recipient_name": "Ольга Шмидт",
    "own_title": "Stadtgärten für alle",
    "other_title": "Зелёные дворы",
    "other_city": "Краснодар",
    "idea_title": "Велопрогулки по Кубани",
    "idea_city": "Краснодар",
    "person_city": "Karlsruhe",
    "score_percent": 87,
    "reasons": ["Beide Ideen wollen Gärten in der Stadt anlegen.", "Обе идеи — про экологию и соседей."],
    "link": "https://tcl.example/api/v1/matches/m1",
    "unsubscribe_url": "https://tcl.example/unsubscribe/p1.abc",
    "project_title": "Grüne Höfe – Зелёные дворы",
    "partner_cities": "Karlsruhe, Краснодар",
    "day": "2026-11-25",
    "minutes": 30,
    "by_city": "Karlsruhe",
    "reason": "Die Ideen passen thematisch doch nicht zusammen.",
    "status": "active",
    "status_changed": True,
    "steps_changed": True,
    "next_steps": ["Kennenlern-Call im Januar", "Гостевой визит весной"],
    "person_name": "Анна Смирнова",
    "via": "join_request",
    "author_name": "Анна Смирнова",
    "author_city": "Краснодар",
    "excerpt": "Wann treffen wir uns? Ich schlage den…",
    "message_lines": ["Wann treffen wir uns?", "", "Ich schlage den Donnerstag vor.", "Как вам?"],
    "accepted": True,
    "meeting_title": "Kick-off",
    "proposer_name": "Lena Hoffmann",
    "proposer_city": "Karlsruhe",
    "duration_minutes": 60,
    "slots": ["Do., 10. Dez. 2026, 18:00 MEZ", "Fr., 11. Dez. 2026, 17:30 MEZ"],
    "zone": "Europe/Berlin",
    "when": "Do., 10. Dez. 2026, 18:00 MEZ",
    "video_link": "https://meet.example.org/twincity-kickoff",
    "items": [
        {"subject": "Eine Partneridee aus Краснодар für „Stadtgärten für alle“",
         "text": "Hallo Ольга,\n\nfür deine Idee gibt es vielleicht eine Partneridee.\n"},
        {"subject": "Вашей идеей «Велосипедный тур» заинтересовались",
         "text": "Здравствуйте!\n\nВашей идеей заинтересовался человек из Karlsruhe.\n"},
    ],
}


def env() -> Environment:
    return Environment(loader=FileSystemLoader(TEMPLATES), undefined=StrictUndefined, keep_trailing_newline=True)


def context(name: str, **overrides: object) -> dict[str, object]:
    return {key: overrides.get(key, SAMPLE[key]) for key in VARIABLES[name]}


def render(lang: str, name: str, **overrides: object) -> str:
    return env().get_template(f"{lang}/{name}.txt").render(**context(name, **overrides))


CASES = [pytest.param(lang, name, id=f"{lang}/{name}") for lang in LANGUAGES for name in VARIABLES]


def test_all_three_languages_have_all_templates_and_nothing_else():
    assert sorted(p.name for p in TEMPLATES.iterdir() if p.is_dir()) == sorted(LANGUAGES)
    for lang in LANGUAGES:
        files = sorted(p.name for p in (TEMPLATES / lang).iterdir())
        assert files == sorted(f"{name}.txt" for name in VARIABLES), lang


@pytest.mark.parametrize(("lang", "name"), CASES)
def test_template_uses_exactly_its_variables(lang, name):
    source = (TEMPLATES / lang / f"{name}.txt").read_text(encoding="utf-8")
    assert meta.find_undeclared_variables(env().parse(source)) == VARIABLES[name]


@pytest.mark.parametrize(("lang", "name"), CASES)
def test_rendered_message_is_complete(lang, name):
    lines = render(lang, name).split("\n")
    assert lines[0].startswith("Subject: ") and lines[0][len("Subject: "):].strip()
    headers = 1 if name in WITHOUT_LINE else 2
    if name not in WITHOUT_LINE:
        assert lines[1].startswith("Line: ") and lines[1][len("Line: "):].strip(), "what happened, in one line"
    assert lines[headers] == "" and lines[headers + 1].strip(), "one empty line between the headers and the body"
    body = "\n".join(lines[headers:])
    rendered = "\n".join(lines)
    assert SAMPLE["recipient_name"] in body
    assert "{{" not in rendered and "}}" not in rendered and "{%" not in rendered and "{#" not in rendered
    if "link" in VARIABLES[name]:
        assert SAMPLE["link"] in body
    if "reasons" in VARIABLES[name]:
        for reason in SAMPLE["reasons"]:
            assert f"\n- {reason}\n" in body
    for key in ("other_city", "idea_city", "person_city", "partner_cities", "day", "author_city", "when", "zone",
                "video_link"):
        if key in VARIABLES[name]:
            assert SAMPLE[key] in body, key
    for key in ("next_steps", "slots"):
        if key in VARIABLES[name]:
            for item in SAMPLE[key]:
                assert f"\n- {item}\n" in body, key
    if "message_lines" in VARIABLES[name]:
        assert "\n".join(SAMPLE["message_lines"]) in body, "the person's own words, line by line"
    if name == "match_proposed":
        assert str(SAMPLE["score_percent"]) in body
    # The footer ends every notification's body: why this e-mail comes, and how to stop it.
    if "unsubscribe_url" in VARIABLES[name]:
        assert SAMPLE["unsubscribe_url"] in body.rstrip().split("\n")[-1]
    if "minutes" in VARIABLES[name]:
        assert str(SAMPLE["minutes"]) in body


@pytest.mark.parametrize(("lang", "name"), CASES)
def test_titles_are_quoted_in_the_language_s_own_marks(lang, name):
    opening, closing = QUOTES[lang]
    rendered = render(lang, name)
    for key in TITLES:
        if key in VARIABLES[name]:
            assert f"{opening}{SAMPLE[key]}{closing}" in rendered, key
    other_marks = {mark for other, pair in QUOTES.items() if other != lang for mark in pair} - set(QUOTES[lang])
    static = (TEMPLATES / lang / f"{name}.txt").read_text(encoding="utf-8")
    assert not other_marks & set(static), "quotation marks of another language"


@pytest.mark.parametrize(("lang", "name"), CASES)
def test_layout_is_plain_text_for_e_mail(lang, name):
    rendered = render(lang, name)
    assert rendered.endswith("\n") and not rendered.endswith("\n\n")
    assert "\n\n\n" not in rendered, "paragraphs are separated by one blank line"
    for number, line in enumerate(rendered.split("\n"), 1):
        assert len(line) < 100, f"line {number} has {len(line)} characters"
        assert line == line.rstrip(), f"line {number} has trailing spaces"


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("name", [n for n in VARIABLES if "reasons" in VARIABLES[n]])
def test_reasons_are_a_list_and_vanish_with_their_heading_when_there_are_none(lang, name):
    with_reasons = render(lang, name).split("\n")
    without = render(lang, name, reasons=[]).split("\n")
    # The reasons, their heading and the blank lines before and after the heading go; nothing else changes.
    assert len(with_reasons) - len(without) == len(SAMPLE["reasons"]) + 3
    assert not any(line.startswith("- ") for line in without)
    start = with_reasons.index(f"- {SAMPLE['reasons'][0]}")
    assert with_reasons[start - 1] == "" and with_reasons[start - 2].endswith(":")
    assert with_reasons[start + len(SAMPLE["reasons"])] == ""


@pytest.mark.parametrize("lang", LANGUAGES)
def test_digest_lists_each_item_under_its_subject_between_lines_of_dashes(lang):
    lines = render(lang, "digest").split("\n")
    dashes = [i for i, line in enumerate(lines) if line.startswith(DASHES)]
    assert len(dashes) == len(SAMPLE["items"]) + 1
    for item, at in zip(SAMPLE["items"], dashes, strict=False):
        assert lines[at + 1] == item["subject"]
        assert lines[at + 2] == ""
        section = "\n".join(lines[at + 3:dashes[dashes.index(at) + 1]])
        assert section.strip() == item["text"].strip()
    assert sum(line.startswith(DASHES) for line in render(lang, "digest", items=[]).split("\n")) == 1


def test_an_email_is_sent_with_its_html_and_one_stored_without_as_plain_text():
    from notify.sender import Sender
    from tests.conftest import make_settings

    sender = Sender(repo=None, settings=make_settings("memory://"), secret="s")  # type: ignore[arg-type]
    doc = {"_id": "ntf-1", "to": "lena@example.org", "subject": "Ein Vorschlag", "text": "Hallo Lena\n",
           "unsubscribe_url": "http://lab.example/unsubscribe/t"}
    plain = sender.build_email(doc)
    assert plain.get_content_type() == "text/plain" and plain.get_content() == "Hallo Lena\n"
    both = sender.build_email({**doc, "html": "<p>Hallo Lena</p>"})
    assert both.get_content_type() == "multipart/alternative"
    assert both.get_body(preferencelist=("html",)).get_content().strip() == "<p>Hallo Lena</p>"


@pytest.mark.parametrize(("person", "email_status", "email_html"), [
    ({"email": "lena@example.org"}, "pending", True),
    ({"email": "lena@example.org", "digest": "daily"}, "digest", False),
    ({"email": None}, "skipped", False),
    ({"email": "lena@example.org", "unsubscribed": True}, "skipped", False),
])
def test_only_an_email_sent_on_its_own_is_stored_with_html(person: dict, email_status: str, email_html: bool):
    from notify import domain, usecases
    from services.contract import Event

    class Stored:
        def __init__(self) -> None:
            self.docs: list[dict] = []

        def add_notification(self, doc: dict) -> bool:
            self.docs.append(doc)
            return True

    repo = Stored()
    letterhead = usecases.Letterhead("http://lab.example", "s", email=True)
    event = Event(id="ev-1", type="match.proposed", version=1, occurred_at="2026-11-26T00:00:00+00:00",
                  correlation_id="c", producer="matching", payload={})
    message = domain.Message("p-1", "match_proposed", context("match_proposed"), link="/ideas/i-1/matches")
    usecases._store(repo, letterhead, event, message,  # type: ignore[arg-type]
                    {"_id": "p-1", "city": "karlsruhe", "name": "Lena", "language": "de", **person}, "2026-11-26")
    inbox, email = repo.docs
    assert inbox["channel"] == "inbox" and "html" not in inbox and inbox["text"]
    assert email["channel"] == "email" and email["status"] == email_status
    assert ("<" in email.get("html", "")) is email_html


# The other branches of the templates that say different things in different cases: each is as well-formed.
VARIANTS = [
    ("project_join_answered", {"accepted": False}),
    ("project_join_answered", {"accepted": False, "by_city": ""}),
    ("project_member_joined", {"via": "match", "person_name": ""}),
    ("project_updated", {"status_changed": False, "by_city": ""}),
    ("project_updated", {"steps_changed": False, "next_steps": []}),
    ("project_updated", {"status_changed": False, "next_steps": [], "status": "done"}),
    ("project_message", {"author_name": "", "message_lines": ["Kurz."]}),
    ("project_join_requested", {"message_lines": []}),
    ("meeting_proposed", {"proposer_city": "", "slots": ["Do., 10. Dez. 2026, 17:00 UTC"]}),
    ("meeting_scheduled", {"video_link": ""}),
    ("meeting_scheduled", {"moved": True}),
]


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize(("name", "overrides"), VARIANTS)
def test_every_branch_of_a_template_is_well_formed(lang, name, overrides):
    rendered = render(lang, name, **overrides)
    lines = rendered.split("\n")
    assert lines[0].startswith("Subject: ") and lines[1].startswith("Line: ") and lines[2] == "" and lines[3].strip()
    assert "\n\n\n" not in rendered and rendered.endswith("\n") and not rendered.endswith("\n\n")
    assert all(len(line) < 100 and line == line.rstrip() for line in lines), rendered
    assert "{{" not in rendered and "{%" not in rendered and "None" not in rendered


@pytest.mark.parametrize("lang", LANGUAGES)
def test_a_join_answer_says_yes_or_no_in_its_own_words(lang):
    yes, no = render(lang, "project_join_answered"), render(lang, "project_join_answered", accepted=False)
    assert yes.split("\n")[0] != no.split("\n")[0] and yes.split("\n")[1] != no.split("\n")[1]


@pytest.mark.parametrize(("lang", "active", "done"), [("de", "aktiv", "abgeschlossen"), ("ru", "в работе", "завершён"),
                                                      ("en", "active", "done")])
def test_a_project_s_status_is_named_in_the_reader_s_language(lang, active, done):
    assert active in render(lang, "project_updated").split("\n")[1]
    assert done in render(lang, "project_updated", status="done")
