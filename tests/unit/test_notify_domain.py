"""Rules of notifying: who is told what, signatures, unsubscribe tokens, safe webhook targets, backoff."""

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

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


def test_the_v2_signature_covers_the_delivery_id_the_time_and_the_body():
    body = b'{"type":"match.proposed"}'
    expected = hmac.new(b"s3cret", b"dlv_1.1764750000." + body, hashlib.sha256).hexdigest()
    assert domain.signature_v2("s3cret", "dlv_1", 1764750000, body) == f"sha256={expected}"
    assert domain.signature_v2("s3cret", "dlv_2", 1764750000, body) != f"sha256={expected}"
    assert domain.signature_v2("s3cret", "dlv_1", 1764750001, body) != f"sha256={expected}"


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

    subject, text, html, line = render.render("match_accepted", "de", {
        "recipient_name": "Lena", "own_title": "Zeile eins\r\nBcc: evil@example.org", "other_title": "Сады",
        "other_city": "Krasnodar", "link": "http://lab.example/m", "unsubscribe_url": "http://lab.example/u"})
    assert "\n" not in subject and "Bcc: evil@example.org" in subject
    assert "\n" not in line and "Bcc: evil@example.org" in line, "the inbox line is one line too"
    assert not any(line.startswith(("Bcc:", "Line:")) for line in text.splitlines())


def test_a_digest_keeps_the_lines_notify_wrote_for_each_item():
    from notify import render

    subject, text, html, _line = render.render("digest", "en", {
        "recipient_name": "Lena", "day": "2026-11-26", "unsubscribe_url": "http://lab.example/u",
        "items": [{"subject": "A match\r\nfor you", "text": "- same theme\n- shared tags\n\nhttp://lab.example/m/1"}]})
    assert "- same theme\n- shared tags" in text and "A match for you" in text
    assert "<li>same theme</li>" in html


# --- joint projects -----------------------------------------------------------------------------------------------

MEMBERS = [{"participant_id": "lena", "city": "karlsruhe", "role": "author"},
           {"participant_id": "anna", "city": "krasnodar", "role": "author"},
           {"participant_id": "tom", "city": "karlsruhe", "role": "interested"}]
NAMES = {"lena": "Lena Hoffmann", "anna": "Анна Смирнова", "tom": "Tom Weber", "olga": "Ольга Петрова"}
ZONES = {"lena": "Europe/Berlin", "anna": "Europe/Moscow", "tom": None, "olga": "Europe/Moscow"}


def project_messages(event_type, **payload):
    base = {"project_id": "prj_1", "partnership": "karlsruhe-krasnodar", "title": "Grüne Höfe", "members": MEMBERS,
            "cities": ["karlsruhe", "krasnodar"]}
    return domain.messages_for(event_type, {**base, **payload}, lambda c, lang: c.capitalize(),
                               lambda p: LANG.get(p, "en"), name_of=lambda p: NAMES.get(p, ""),
                               zone_of=lambda p: ZONES.get(p))


def by_recipient(out):
    return {m.recipient: m for m in out}


def test_a_new_status_or_new_next_steps_tell_every_member_a_new_summary_alone_no_one():
    out = project_messages("project.updated", status="active", next_steps=["Call im Januar"],
                           changed=["status", "next_steps"], city="karlsruhe")
    assert [m.recipient for m in out] == ["lena", "anna", "tom"], "all members, the acting city's too"
    anna = by_recipient(out)["anna"]
    assert anna.template == "project_updated" and anna.context["status"] == "active"
    assert anna.context["next_steps"] == ["Call im Januar"] and anna.context["status_changed"]
    assert anna.link == "/projects/prj_1" and anna.details == ("- Call im Januar",)
    assert project_messages("project.updated", status="active", summary="Neu", changed=["summary", "title"]) == []
    [only_status] = {m.context["steps_changed"] for m in project_messages(
        "project.updated", status="paused", next_steps=["x"], changed=["status"])}
    assert only_status is False
    by_lena = project_messages("project.updated", status="done", changed=["status"], city="karlsruhe",
                               actor_id="lena")
    assert [m.recipient for m in by_lena] == ["anna", "tom"], "the member who changed it on the page knows"


def test_a_new_member_is_told_to_the_others_with_name_and_city():
    out = project_messages("project.member_joined", participant_id="tom", city="karlsruhe", via="join_request")
    assert sorted(m.recipient for m in out) == ["anna", "lena"], "not the one who joined"
    anna = by_recipient(out)["anna"]
    assert anna.template == "project_member_joined" and anna.context["person_name"] == "Tom Weber"
    assert anna.context["person_city"] == "Karlsruhe" and anna.context["via"] == "join_request"
    assert anna.about == ("tom",)


def test_a_message_goes_to_every_member_but_its_author():
    text = "Wann treffen wir uns?\n\n\nIch schlage Donnerstag vor, nach der Arbeit, so gegen 18 Uhr bei uns im Büro."
    out = project_messages("project.message_posted", message_id="msg_1", author_id="anna", city="krasnodar",
                           text=text)
    assert sorted(m.recipient for m in out) == ["lena", "tom"], "the author is not told of their own message"
    lena = by_recipient(out)["lena"]
    assert lena.template == "project_message" and lena.context["author_name"] == "Анна Смирнова"
    assert lena.context["author_city"] == "Krasnodar"
    assert lena.context["message_lines"] == ["Wann treffen wir uns?", "", "Ich schlage Donnerstag vor, nach der "
                                             "Arbeit, so gegen 18 Uhr bei uns im Büro."], "one empty line, not two"
    assert lena.context["excerpt"].startswith("Wann treffen wir uns? Ich schlage")
    assert lena.context["excerpt"].endswith("…") and len(lena.context["excerpt"]) <= 81
    assert lena.details == tuple(lena.context["message_lines"]), "the digest carries the whole text"
    assert lena.about == ("anna",), "erased with its author"
    short = by_recipient(project_messages("project.message_posted", message_id="m", author_id="anna",
                                          city="krasnodar", text="Passt!"))["lena"]
    assert short.context["excerpt"] == "Passt!" and short.details == (), "the line says it all"


def test_a_join_request_tells_every_member_and_its_answer_tells_the_one_who_asked():
    asked = project_messages("project.join_requested", request_id="req_1", participant_id="olga", city="krasnodar",
                             status="requested", message="Ich möchte mitmachen.\nЯ садовод.")
    assert sorted(m.recipient for m in asked) == ["anna", "lena", "tom"]
    lena = by_recipient(asked)["lena"]
    assert lena.template == "project_join_requested" and lena.context["person_name"] == "Ольга Петрова"
    assert lena.context["person_city"] == "Krasnodar" and lena.context["message_lines"] == [
        "Ich möchte mitmachen.", "Я садовод."] and lena.link == "/projects/prj_1"
    for status, accepted in (("accepted", True), ("declined", False)):
        members = MEMBERS + [{"participant_id": "olga", "city": "krasnodar"}] if accepted else MEMBERS
        [answer] = project_messages("project.join_answered", request_id="req_1", participant_id="olga",
                                    city="krasnodar", status=status, by_city="karlsruhe", members=members)
        assert answer.recipient == "olga" and answer.template == "project_join_answered"
        assert answer.context["accepted"] is accepted and answer.context["by_city"] == "Karlsruhe"


def test_slots_are_shown_in_each_reader_s_own_time_zone_and_not_to_the_one_who_proposed():
    out = project_messages("meeting.proposed", meeting_id="mtg_1", meeting_title="Kick-off", proposer_id="tom",
                           duration_minutes=60, slots=["2026-12-11T09:30:00+00:00", "2026-12-10T17:00:00Z"])
    assert sorted(m.recipient for m in out) == ["anna", "lena"], "the proposer knows their own proposal"
    lena, anna = by_recipient(out)["lena"], by_recipient(out)["anna"]
    assert lena.template == "meeting_proposed" and lena.link == "/projects/prj_1#meeting-mtg_1"
    # The same UTC instant: 18:00 in Karlsruhe (Berlin time), 20:00 in Krasnodar (Moscow time); earliest first.
    assert lena.context["slots"] == ["Do., 10. Dez. 2026, 18:00 MEZ", "Fr., 11. Dez. 2026, 10:30 MEZ"]
    # (CLDR's Russian dates keep the year and its "г." together with a narrow no-break space)
    assert anna.context["slots"] == ["чт, 10 дек. 2026\u202fг., 20:00 UTC+3", "пт, 11 дек. 2026\u202fг., 12:30 UTC+3"]
    assert (lena.context["zone"], anna.context["zone"]) == ("Europe/Berlin", "Europe/Moscow")
    assert anna.context["proposer_name"] == "Tom Weber" and anna.context["proposer_city"] == "Karlsruhe"
    assert lena.details == ("- Do., 10. Dez. 2026, 18:00 MEZ", "- Fr., 11. Dez. 2026, 10:30 MEZ")


def test_a_reader_without_a_known_time_zone_reads_utc_and_is_told_so():
    [tom] = [m for m in project_messages("meeting.proposed", meeting_id="mtg_1", meeting_title="Kick-off",
                                         proposer_id="lena", duration_minutes=30, slots=["2026-12-10T17:00:00Z"])
             if m.recipient == "tom"]
    assert tom.context["slots"] == ["Thu, Dec 10, 2026, 17:00 UTC"] and tom.context["zone"] == "UTC"
    assert domain.local_time(datetime(2026, 12, 10, 17, tzinfo=UTC), "Not/A_Zone", "de").endswith("17:00 UTC")
    assert domain.local_time(datetime(2026, 7, 10, 17, tzinfo=UTC), "Europe/Berlin", "de").endswith("19:00 MESZ")


def test_a_scheduled_meeting_tells_every_member_in_their_time_with_one_invitation():
    out = project_messages("meeting.scheduled", meeting_id="mtg_1", meeting_title="Kick-off", proposer_id="tom",
                           duration_minutes=90, start="2026-12-10T17:00:00+00:00", link="https://meet.example/x",
                           sequence=2)
    assert [m.recipient for m in out] == ["lena", "anna", "tom"], "every member, the proposer too"
    lena, anna = by_recipient(out)["lena"], by_recipient(out)["anna"]
    assert lena.context["when"] == "Do., 10. Dez. 2026, 18:00 MEZ"
    assert anna.context["when"] == "чт, 10 дек. 2026\u202fг., 20:00 UTC+3"
    assert lena.context["video_link"] == "https://meet.example/x" and lena.context["duration_minutes"] == 90
    invitation = lena.invitation
    assert invitation is not None and {m.invitation for m in out} == {invitation}, "the same for every member"
    assert invitation.uid == "mtg_1@twincity" and invitation.summary == "Grüne Höfe: Kick-off"
    assert invitation.start == datetime(2026, 12, 10, 17, tzinfo=UTC)
    assert invitation.end == datetime(2026, 12, 10, 18, 30, tzinfo=UTC) and invitation.sequence == 2


def test_the_invitation_is_an_icalendar_that_parses_back_to_the_same_utc_instant():
    import icalendar

    from notify import invitation as ics

    [message, *_] = project_messages("meeting.scheduled", meeting_id="mtg_1", meeting_title="Kick-off",
                                     duration_minutes=45, start="2026-12-10T20:00:00+03:00",
                                     link="https://meet.example/x", sequence=1)
    text = ics.ics(message.invitation, "http://lab.example/projects/prj_1#meeting-mtg_1",
                   datetime(2026, 12, 2, 16, 37, tzinfo=UTC))
    calendar = icalendar.Calendar.from_ical(text)
    assert str(calendar["method"]) == "PUBLISH" and str(calendar["version"]) == "2.0" and calendar["prodid"]
    [event] = calendar.walk("VEVENT")
    assert event.decoded("dtstart") == datetime(2026, 12, 10, 17, tzinfo=UTC)
    assert event.decoded("dtend") - event.decoded("dtstart") == timedelta(minutes=45)
    assert "DTSTART:20261210T170000Z" in text, "in UTC"
    assert str(event["uid"]) == "mtg_1@twincity" and int(event["sequence"]) == 1
    assert str(event["summary"]) == "Grüne Höfe: Kick-off"
    assert "http://lab.example/projects/prj_1#meeting-mtg_1" in str(event["description"])
    assert str(event["url"]) == "https://meet.example/x" and str(event["location"]) == "https://meet.example/x"
    assert event.decoded("dtstamp") == datetime(2026, 12, 2, 16, 37, tzinfo=UTC)
    # A digest carries the invitations of its day in one calendar; a meeting moved that day once, as set last.
    later = ics.ics(domain.Invitation("mtg_1@twincity", datetime(2026, 12, 11, 17, tzinfo=UTC), 45, "Grüne Höfe: "
                                      "Kick-off", sequence=2), "http://lab.example/projects/prj_1", datetime.now(UTC))
    other = ics.ics(domain.Invitation("mtg_2@twincity", datetime(2026, 12, 12, 9, tzinfo=UTC), 30, "X: Y"),
                    "http://lab.example/projects/prj_2", datetime.now(UTC))
    merged = icalendar.Calendar.from_ical(ics.merge([text, later, other]))
    starts = {str(e["uid"]): e.decoded("dtstart") for e in merged.walk("VEVENT")}
    assert starts == {"mtg_1@twincity": datetime(2026, 12, 11, 17, tzinfo=UTC),
                      "mtg_2@twincity": datetime(2026, 12, 12, 9, tzinfo=UTC)}
    assert ics.merge([]) is None


def test_a_digest_shows_the_line_and_details_of_an_item_without_reasons():
    message = domain.Message("lena", "meeting_proposed", {}, details=("- Do., 18:00 MEZ",))
    assert domain.digest_summary(message, "Tom schlägt Termine vor", "http://lab.example/projects/p") == (
        "Tom schlägt Termine vor\n\n- Do., 18:00 MEZ\n\nhttp://lab.example/projects/p")
    with_reasons = domain.Message("lena", "match_proposed", {"reasons": ["Gleiches Thema"]})
    assert domain.digest_summary(with_reasons, "Partneridee", "http://l") == "- Gleiches Thema\n\nhttp://l"


def test_webhooks_hear_of_project_changes_and_meetings_never_of_the_members_words():
    for event_type in ("project.updated", "project.member_joined", "meeting.scheduled"):
        assert event_type in domain.WEBHOOK_EVENTS and event_type in domain.PEOPLE_EVENTS
        assert event_type not in domain.WEBHOOK_ONLY_EVENTS, "bound always: people hear of them"
    for private in ("project.message_posted", "project.join_requested", "project.join_answered", "meeting.proposed"):
        assert private not in domain.WEBHOOK_EVENTS and private in domain.PEOPLE_EVENTS
    meeting = {"city": None, "payload": {"project_id": "p", "members": [{"participant_id": "lena",
                                                                         "city": "karlsruhe"}],
                                         "cities": ["karlsruhe", "krasnodar"]}}
    assert domain.webhook_cities(meeting) == {"karlsruhe", "krasnodar"}, "a city with no member yet hears too"


def test_the_handlers_table_serves_people_and_webhooks_for_project_events():
    from notify import handlers

    table = handlers.EVENT_HANDLERS
    assert table["meeting.scheduled"] == [handlers.notify_people, handlers.notify_webhooks]
    assert table["project.message_posted"] == [handlers.notify_people]


def _round(phase: str) -> dict:
    return {"round_id": "round_1", "partnership": "ka-kr", "cities": ["karlsruhe", "krasnodar"],
            "name": "Twin City Lab 2027", "collect_until": "2026-12-10", "workshop_at": "2026-12-12T09:00:00+00:00",
            "projects_from": "2026-12-14", "timezone": "Europe/Berlin", "phase": phase}


def test_a_round_s_people_hear_that_collecting_ends_soon_and_that_the_results_are_in():
    people = {"karlsruhe": ["lena"], "krasnodar": ["anna"], "nancy": ["marie"]}
    langs = {"lena": "de", "anna": "ru"}
    zones = {"lena": "Europe/Berlin", "anna": "Europe/Moscow"}

    def told(event_type: str, payload: dict) -> list:
        return domain.messages_for(event_type, payload, lambda key, lang: key.capitalize(), lambda pid: langs[pid],
                                   zone_of=lambda pid: zones[pid],
                                   people_in=lambda cities: [p for c in cities for p in people.get(c, [])])

    soon = told("round.closing_soon", _round("collecting"))
    assert [m.recipient for m in soon] == ["lena", "anna"], "the round's cities' people, nobody else's"
    anna = next(m for m in soon if m.recipient == "anna")
    assert anna.template == "round_closing_soon"
    assert anna.context["collect_until"].replace("\u202f", " ") == "10 декабря 2026 г."
    assert "12:00" in anna.context["workshop"], "the workshop in Anna's own time (Moscow)"
    assert told("round.phase_changed", _round("matching")) == []
    results = told("round.phase_changed", _round("projects"))
    assert [(m.recipient, m.template, m.link) for m in results] == [("lena", "round_results", "/matches"),
                                                                     ("anna", "round_results", "/matches")]
