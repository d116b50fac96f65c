"""Rules of ideas: status moves, what may be edited, language detection."""

import pytest

from ideas import domain
from twincity.demo import IDEAS, PARTICIPANTS


@pytest.mark.parametrize(("text", "language"), [
    ("Gemeinschaftsgärten für das Klima und die Nachbarschaft", "de"),
    ("Мастерские для молодёжи: вторая жизнь старых вещей", "ru"),
    ("Майстерні для молоді: друге життя старих речей", "uk"),
    ("Jardins partagés pour les jeunes de la ville", "fr"),
    ("Community gardens for young people in both cities", "en"),
    ("Hackathon", "en"),  # nothing to go by: the default
    ("", "en"),
])
def test_detect_language(text, language):
    assert domain.detect_language(text) == language


def test_every_demo_idea_is_detected_in_its_city_language():
    expected = {"karlsruhe": "de", "krasnodar": "ru"}
    for city, _, idea in IDEAS:
        assert domain.detect_language(f"{idea['title']}. {idea['description']}") == expected[city], idea["title"]


def test_demo_authors_exist():
    for city, author, _ in IDEAS:
        assert author < len(PARTICIPANTS[city])


@pytest.mark.parametrize(("current", "wanted", "allowed"), [
    ("open", "matched", True), ("matched", "in_project", True), ("open", "in_project", True),
    ("open", "withdrawn", True), ("matched", "withdrawn", True),
    ("withdrawn", "open", False), ("in_project", "withdrawn", False), ("withdrawn", "withdrawn", False),
    ("in_project", "matched", False),
])
def test_status_moves(current, wanted, allowed):
    if allowed:
        domain.check_transition(current, wanted)
    else:
        with pytest.raises(domain.RuleViolation):
            domain.check_transition(current, wanted)


def test_withdrawn_and_joined_ideas_are_no_longer_edited():
    domain.check_editable("open")
    domain.check_editable("matched")
    for status in ("withdrawn", "in_project"):
        with pytest.raises(domain.RuleViolation, match="can no longer be edited"):
            domain.check_editable(status)


def test_changed_fields_names_only_real_changes_of_editable_fields():
    current = {"title": "A", "tags": ["x"], "status": "open"}
    assert domain.changed_fields(current, {"title": "A", "tags": ["x", "y"], "status": "withdrawn"}) == ["tags"]
