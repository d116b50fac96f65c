"""Rules of notifying: who is told what, signatures, unsubscribe tokens, safe webhook targets, backoff."""

import hashlib
import hmac

import pytest

from notify import domain

SIDES = [{"city": "karlsruhe", "idea_id": "i1", "author_id": "lena", "title": "Gärten"},
         {"city": "krasnodar", "idea_id": "i2", "author_id": "anna", "title": "Сады"}]
REASONS = [{"code": "same_theme", "text": {"de": "Gleiches Thema", "ru": "Общая тема", "en": "Same theme"}}]
LANG = {"lena": "de", "anna": "ru", "tom": "fr"}


def messages(event_type, payload):
    return domain.messages_for(event_type, payload, lambda c, lang: c.capitalize(), lambda p: LANG.get(p, "en"))


def test_a_proposed_match_tells_both_authors_about_the_other_side_in_their_language():
    out = messages("match.proposed", {"kind": "idea", "match_id": "m", "score": 0.83, "sides": SIDES,
                                      "reasons": REASONS})
    by = {m.recipient: m for m in out}
    assert set(by) == {"lena", "anna"}
    assert by["lena"].context["other_title"] == "Сады" and by["lena"].context["reasons"] == ["Gleiches Thema"]
    assert by["anna"].context["other_city"] == "Karlsruhe" and by["anna"].context["reasons"] == ["Общая тема"]
    assert by["lena"].context["score_percent"] == 83 and by["lena"].link == "/ideas/i1/matches"


def test_an_acceptance_tells_the_other_side_only():
    out = messages("match.accepted", {"match_id": "m", "city": "krasnodar", "sides": SIDES})
    assert [(m.recipient, m.template) for m in out] == [("lena", "match_accepted")]


def test_the_second_acceptance_tells_no_one_it_is_their_turn():
    """Both sides said yes: the first to accept hears of the project (project.formed), not "your turn"."""
    assert messages("match.accepted", {"match_id": "m", "city": "krasnodar", "sides": SIDES,
                                       "status": "confirmed"}) == []


def test_a_withdrawal_closing_a_match_tells_no_one():
    assert messages("match.declined", {"match_id": "m", "city": "karlsruhe", "sides": SIDES,
                                       "reason": "withdrawn"}) == []


def test_a_new_project_tells_every_member():
    out = messages("project.formed", {"project_id": "p", "title": "T", "members": [
        {"participant_id": "lena", "city": "karlsruhe"}, {"participant_id": "anna", "city": "krasnodar"}]})
    assert [m.recipient for m in out] == ["lena", "anna"]
    assert out[0].context["partner_cities"] == "Karlsruhe, Krasnodar"


def test_unknown_languages_fall_back_to_english():
    assert domain.language_of({"language": "fr"}) == "en" and domain.language_of(None) == "en"
    assert domain.language_of({"language": "ru"}) == "ru"


def test_the_signature_is_hmac_sha256_of_the_body():
    body = b'{"type":"match.proposed"}'
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert domain.signature("s3cret", body) == f"sha256={expected}"


def test_unsubscribe_tokens_are_bound_to_the_person_and_the_secret():
    token = domain.unsubscribe_token("key", "prt_1")
    assert domain.check_unsubscribe_token("key", token) == "prt_1"
    assert domain.check_unsubscribe_token("other-key", token) is None
    assert domain.check_unsubscribe_token("key", token.replace("prt_1", "prt_2")) is None
    assert domain.check_unsubscribe_token("key", "garbage") is None


@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.5", "192.168.1.1", "172.16.0.1", "169.254.169.254",
                                     "::1", "fe80::1", "0.0.0.0", "224.0.0.1"])
def test_private_and_local_targets_are_refused(address):
    with pytest.raises(domain.UnsafeTarget):
        domain.check_addresses([address], allow=[])


def test_allowed_networks_and_public_addresses_pass():
    domain.check_addresses(["127.0.0.1"], allow=["127.0.0.0/8"])
    domain.check_addresses(["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"], allow=[])
    with pytest.raises(domain.UnsafeTarget):
        domain.check_addresses(["93.184.216.34", "10.0.0.1"], allow=[])  # any bad address refuses


def test_backoff_doubles_up_to_a_cap():
    assert [domain.backoff(n, 30) for n in (1, 2, 3)] == [30, 60, 120]
    assert domain.backoff(30, 30) == 3600


def test_webhooks_hear_of_the_cities_an_event_touches():
    envelope = {"city": None, "payload": {"sides": SIDES}}
    assert domain.webhook_cities(envelope) == {"karlsruhe", "krasnodar"}
    project = {"city": None, "payload": {"members": [], "cities": ["karlsruhe", "krasnodar"]}}  # no authors
    assert domain.webhook_cities(project) == {"karlsruhe", "krasnodar"}


def test_webhook_only_events_have_no_other_handler():
    """They reach notify only while a webhook asks (notify.bootstrap.SPEC.optional_events)."""
    from notify import bootstrap as app
    from notify import domain

    assert set(app.SPEC.optional_events) == set(domain.WEBHOOK_ONLY_EVENTS)
    assert "idea.submitted" in domain.WEBHOOK_ONLY_EVENTS and "match.proposed" not in domain.WEBHOOK_ONLY_EVENTS


def test_a_line_break_in_a_title_does_not_end_the_subject_or_start_a_header_line():
    from notify import render

    subject, text, html = render.render("match_accepted", "de", {
        "recipient_name": "Lena", "own_title": "Zeile eins\r\nBcc: evil@example.org", "other_title": "Сады",
        "other_city": "Krasnodar", "link": "http://lab.example/m", "unsubscribe_url": "http://lab.example/u"})
    assert "\n" not in subject and "Bcc: evil@example.org" in subject
    assert not any(line.startswith("Bcc:") for line in text.splitlines())


def test_a_digest_keeps_the_lines_notify_wrote_for_each_item():
    from notify import render

    subject, text, html = render.render("digest", "en", {
        "recipient_name": "Lena", "day": "2026-11-26", "unsubscribe_url": "http://lab.example/u",
        "items": [{"subject": "A match\r\nfor you", "text": "- same theme\n- shared tags\n\nhttp://lab.example/m/1"}]})
    assert "- same theme\n- shared tags" in text and "A match for you" in text
    assert "<li>same theme</li>" in html
