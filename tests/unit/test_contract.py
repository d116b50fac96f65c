"""The event contract: checked when made and when consumed; versions and upcasting."""

import json

import pytest

from services import context, contract
from services.contract import ContractError, new_event, parse_event

IDEA = {"idea_id": "i1", "city": "karlsruhe", "title": "Hackathon", "theme": "innovation-economy",
        "language": "de", "status": "open", "version": 1}


def roundtrip(envelope):
    return parse_event(json.loads(json.dumps(envelope)))


def test_every_event_type_the_platform_names_has_a_schema():
    assert contract.known_types() == sorted([
        "city.registered", "city.updated", "partnership.formed", "partnership.updated",
        "idea.submitted", "idea.updated", "idea.withdrawn",
        "participant.registered", "participant.updated", "participant.erased",
        "match.proposed", "match.accepted", "match.declined", "match.confirmed", "match.expired", "match.withdrawn",
        "matching.run_requested",
        "project.formed", "project.updated", "project.member_joined", "project.message_posted",
        "project.join_requested", "project.join_answered", "meeting.proposed", "meeting.scheduled",
        "round.opened", "round.updated", "round.phase_changed", "round.closed", "round.closing_soon",
        "notification.delivered", "notification.failed",
    ])


def test_new_event_fills_the_envelope_and_roundtrips():
    with context.correlated("req-12345678", event="00000000-0000-4000-8000-000000000001"):
        env = new_event("idea.submitted", IDEA, producer="ideas", city="karlsruhe", partnership="ka-kr")
    assert env["type"] == "idea.submitted" and env["version"] == 1 and env["producer"] == "ideas"
    assert env["correlation_id"] == "req-12345678"
    assert env["causation_id"] == "00000000-0000-4000-8000-000000000001"
    event = roundtrip(env)
    assert event.id == env["id"] and event.payload["tags"] == [] and event.payload["title"] == "Hackathon"


def test_without_a_request_a_fresh_correlation_id_is_made():
    env = new_event("idea.withdrawn", {"idea_id": "i", "city": "c", "version": 2}, producer="t")
    assert env["correlation_id"] and env["causation_id"] is None


def test_a_payload_that_breaks_the_contract_is_refused_when_made():
    with pytest.raises(ContractError) as err:
        new_event("idea.submitted", {**IDEA, "language": "klingon"}, producer="ideas")
    assert err.value.reason == "invalid payload" and "language" in str(err.value)


def test_unknown_fields_are_ignored_by_consumers():
    env = new_event("idea.withdrawn", {"idea_id": "i", "city": "c", "version": 1}, producer="t")
    env["payload"]["added_in_a_later_release"] = True
    env["something_new"] = 1
    assert "added_in_a_later_release" not in roundtrip(env).payload


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"type": "idea.exploded"}, "unknown event type"),
        ({"version": 2}, "unsupported version"),
        ({"id": "not-a-uuid"}, "invalid envelope"),
        ({"occurred_at": "2026-11-25T10:00:00"}, "invalid envelope"),  # no time zone
        ({"payload": {"idea_id": "i"}}, "invalid payload"),
    ],
)
def test_bad_envelopes_are_refused_with_a_reason(change, reason):
    env = {**new_event("idea.withdrawn", {"idea_id": "i", "city": "c", "version": 1}, producer="t"), **change}
    with pytest.raises(ContractError) as err:
        roundtrip(env)
    assert err.value.reason == reason


def test_not_an_object_is_refused():
    with pytest.raises(ContractError, match="not an event envelope"):
        parse_event([1, 2])


def test_a_match_must_pair_two_different_cities():
    side = {"city": "karlsruhe", "idea_id": "a"}
    payload = {"match_id": "m", "partnership": "p", "kind": "idea", "score": 0.8, "sides": [side, side],
               "version": 1}
    with pytest.raises(ContractError, match="two different cities"):
        new_event("match.proposed", payload, producer="matching")


def test_old_versions_are_upcast_for_consumers(monkeypatch):
    # A breaking change: v2 renames `title` to `name`; v1 events still in queues are read as v2.
    from marshmallow import fields

    class V2(contract.IdeaWithdrawnV1):
        name = fields.Str(required=True)

    types = dict(contract.EVENT_TYPES)
    types[("idea.withdrawn", 2)] = contract.EventType("idea.withdrawn", 2, V2, "v2")
    monkeypatch.setattr(contract, "EVENT_TYPES", types)
    monkeypatch.setitem(contract.UPCASTERS, ("idea.withdrawn", 1), lambda p: {**p, "name": f"idea {p['idea_id']}"})
    v1 = new_event("idea.withdrawn", {"idea_id": "i", "city": "c", "version": 1}, producer="t", version=1)
    event = roundtrip(v1)
    assert (event.version, event.received_version, event.payload["name"]) == (2, 1, "idea i")
