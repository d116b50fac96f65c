"""The store contract: the MongoDB features the platform relies on, held to the same tests per adapter."""

# Every test takes the `db` fixture (tests/contract/conftest.py), parametrized over two adapters: mongomock
# (the embedded mode and most tests; behind services.store's lock proxy) and a real MongoDB (marked `mongo`,
# run only when MONGO_URL=mongodb://...). A feature that is not pinned down here is not one to rely on.

from __future__ import annotations

import sys
import threading
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pymongo
import pytest

from services import inbox, outbox, store
from services.store import DuplicateKeyError, Index


def event(event_id: str, type_: str = "idea.submitted", version: int = 1) -> dict[str, Any]:
    return {"id": event_id, "type": type_, "version": version, "payload": {}}


def ids(docs: Any) -> list[Any]:
    return [doc["_id"] for doc in docs]


# Reading and writing ----------------------------------------------------------------------------------


def test_insert_one_then_find_one_by_id(db: Any) -> None:
    result = db.ideas.insert_one({"_id": "i1", "title": "Radwege", "tags": ["mobility"]})

    assert result.inserted_id == "i1"
    assert db.ideas.find_one({"_id": "i1"}) == {"_id": "i1", "title": "Radwege", "tags": ["mobility"]}
    assert db.ideas.find_one({"_id": "nope"}) is None


def test_insert_one_without_id_assigns_one(db: Any) -> None:
    result = db.ideas.insert_one({"title": "Urban gardening"})

    assert result.inserted_id is not None
    assert db.ideas.find_one({"_id": result.inserted_id})["title"] == "Urban gardening"


def test_find_with_projection(db: Any) -> None:
    db.ideas.insert_one({"_id": "i1", "title": "Radwege", "theme": "ecology-health",
                         "_outbox": [event("e1")]})

    assert db.ideas.find_one({"_id": "i1"}, {"title": 1}) == {"_id": "i1", "title": "Radwege"}
    assert db.ideas.find_one({"_id": "i1"}, {"_id": 0, "theme": 1}) == {"theme": "ecology-health"}
    assert db.ideas.find_one({"_id": "i1"}, {"_outbox": 0}) == {
        "_id": "i1", "title": "Radwege", "theme": "ecology-health"}


def test_find_with_sort_skip_and_limit(db: Any) -> None:
    db.ideas.insert_many([
        {"_id": "a", "theme": "ecology-health", "score": 0.2},
        {"_id": "b", "theme": "ecology-health", "score": 0.9},
        {"_id": "c", "theme": "innovation-economy", "score": 0.5},
        {"_id": "d", "theme": "ecology-health", "score": 0.5},
        {"_id": "e", "theme": "innovation-economy", "score": 0.1},
    ])

    by_theme_then_best = db.ideas.find({}).sort([("theme", 1), ("score", -1)])
    assert ids(by_theme_then_best) == ["b", "d", "a", "c", "e"]
    page = db.ideas.find({}).sort("score", pymongo.DESCENDING).skip(1).limit(2)
    assert [doc["score"] for doc in page] == [0.5, 0.5]
    assert ids(db.ideas.find({"theme": "ecology-health"}).sort("_id", 1).skip(2)) == ["d"]
    assert ids(db.ideas.find({}).sort("_id", 1).limit(2)) == ["a", "b"]


def test_count_documents(db: Any) -> None:
    db.ideas.insert_many([{"_id": i, "status": "open" if i % 3 else "matched"} for i in range(10)])

    assert db.ideas.count_documents({}) == 10
    assert db.ideas.count_documents({"status": "matched"}) == 4
    assert db.ideas.count_documents({"status": "withdrawn"}) == 0


# Indexes ----------------------------------------------------------------------------------------------


PAIR_INDEXES = {
    "matches": [Index(keys=[("pair", 1)], unique=True, name="match_pair")],
    "projects": [Index(keys=[("idea_a", 1), ("idea_b", 1)], unique=True, name="project_ideas")],
}


def test_unique_index_rejects_a_second_document(db: Any) -> None:
    store.ensure_indexes(db, PAIR_INDEXES)
    db.matches.insert_one({"_id": "m1", "pair": "i1|i2"})

    with pytest.raises(DuplicateKeyError):
        db.matches.insert_one({"_id": "m2", "pair": "i1|i2"})
    assert ids(db.matches.find({"pair": "i1|i2"})) == ["m1"]
    assert issubclass(DuplicateKeyError, store.StoreError)


def test_compound_unique_index_rejects_only_the_same_combination(db: Any) -> None:
    store.ensure_indexes(db, PAIR_INDEXES)
    db.projects.insert_one({"idea_a": "i1", "idea_b": "i2"})
    db.projects.insert_one({"idea_a": "i1", "idea_b": "i3"})  # shares one key only: allowed

    with pytest.raises(DuplicateKeyError):
        db.projects.insert_one({"idea_a": "i1", "idea_b": "i2"})
    assert db.projects.count_documents({}) == 2


def test_duplicate_id_raises_duplicate_key_error(db: Any) -> None:
    db.ideas.insert_one({"_id": "i1"})

    with pytest.raises(DuplicateKeyError):
        db.ideas.insert_one({"_id": "i1"})


def test_ensure_indexes_is_idempotent(db: Any) -> None:
    wanted = {**PAIR_INDEXES, "ideas": [outbox.INDEX]}

    store.ensure_indexes(db, wanted)
    store.ensure_indexes(db, wanted)  # every process does it at start

    assert set(db.matches.index_information()) == {"_id_", "match_pair"}
    assert db.matches.index_information()["match_pair"]["unique"] is True
    assert set(db.ideas.index_information()) == {"_id_", "outbox_pending"}
    db.matches.insert_one({"pair": "i1|i2"})
    with pytest.raises(DuplicateKeyError):
        db.matches.insert_one({"pair": "i1|i2"})


# Conditional updates ----------------------------------------------------------------------------------


def test_conditional_update_refuses_a_stale_version(db: Any) -> None:
    db.matches.insert_one({"_id": "m1", "status": "proposed", "version": 1})

    first = db.matches.update_one({"_id": "m1", "version": 1},
                                  {"$set": {"status": "accepted"}, "$inc": {"version": 1}})
    stale = db.matches.update_one({"_id": "m1", "version": 1},
                                  {"$set": {"status": "declined"}, "$inc": {"version": 1}})

    assert (first.matched_count, first.modified_count) == (1, 1)
    assert (stale.matched_count, stale.modified_count) == (0, 0)
    assert db.matches.find_one({"_id": "m1"}) == {"_id": "m1", "status": "accepted", "version": 2}


def test_find_one_and_update_returns_the_document_after(db: Any) -> None:
    db.matches.insert_one({"_id": "m1", "status": "proposed", "version": 1})

    after = db.matches.find_one_and_update(
        {"_id": "m1", "version": 1}, {"$set": {"status": "accepted"}, "$inc": {"version": 1}},
        return_document=pymongo.ReturnDocument.AFTER, upsert=False)

    assert after == {"_id": "m1", "status": "accepted", "version": 2}


def test_find_one_and_update_without_upsert_creates_nothing(db: Any) -> None:
    db.matches.insert_one({"_id": "m1", "status": "accepted", "version": 2})

    stale = db.matches.find_one_and_update(
        {"_id": "m1", "version": 1}, {"$set": {"status": "declined"}},
        return_document=pymongo.ReturnDocument.AFTER, upsert=False)
    missing = db.matches.find_one_and_update(
        {"_id": "m2"}, {"$set": {"status": "declined"}},
        return_document=pymongo.ReturnDocument.AFTER, upsert=False)

    assert stale is None and missing is None
    assert list(db.matches.find()) == [{"_id": "m1", "status": "accepted", "version": 2}]


def test_concurrent_updates_to_version_are_not_allowed(db: Any) -> None:
    """Several writers race for each of many fresh documents: exactly one wins every round."""
    rounds, writers = 200, 4
    db.matches.insert_many([{"_id": r, "owner": None, "version": 1} for r in range(rounds)])
    barrier = threading.Barrier(writers, timeout=30)
    winners: list[list[str]] = [[] for _ in range(rounds)]
    failures: list[BaseException] = []

    def race(name: str) -> None:
        try:
            for r in range(rounds):
                barrier.wait()
                result = db.matches.update_one({"_id": r, "version": 1},
                                               {"$set": {"owner": name}, "$inc": {"version": 1}})
                if result.matched_count == 1:
                    winners[r].append(name)  # list.append is atomic under the GIL
        except BaseException as exc:
            failures.append(exc)
            barrier.abort()

    # Switching threads very often makes mongomock's read-then-write race visible without the lock proxy.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        threads = [threading.Thread(target=race, args=(f"writer-{i}",)) for i in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        sys.setswitchinterval(interval)

    assert not failures, failures
    assert [r for r in range(rounds) if len(winners[r]) != 1] == []
    for doc in db.matches.find():
        assert doc["version"] == 2
        assert [doc["owner"]] == winners[doc["_id"]]


# The outbox -------------------------------------------------------------------------------------------


def test_outbox_events_are_stored_with_the_inserted_document(db: Any) -> None:
    db.ideas.insert_one(outbox.with_events({"_id": "i1", "status": "open"}, [event("e1")]))

    assert db.ideas.find_one({"_id": "i1"}) == {"_id": "i1", "status": "open", "_outbox": [event("e1")]}


def test_outbox_events_are_pushed_with_the_update(db: Any) -> None:
    db.ideas.insert_one(outbox.with_events({"_id": "i1", "status": "open", "version": 1}, [event("e1")]))

    result = db.ideas.update_one(
        {"_id": "i1", "version": 1},
        outbox.push_events({"$set": {"status": "matched"}, "$inc": {"version": 1}},
                           [event("e2", "idea.matched"), event("e3", "idea.matched")]))

    assert result.modified_count == 1
    doc = db.ideas.find_one({"_id": "i1"})
    assert (doc["status"], doc["version"]) == ("matched", 2)
    assert [e["id"] for e in doc["_outbox"]] == ["e1", "e2", "e3"]  # appended in order, none lost


def test_outbox_push_creates_the_field_on_a_document_without_one(db: Any) -> None:
    db.ideas.insert_one({"_id": "i1", "status": "open"})

    db.ideas.update_one({"_id": "i1"}, outbox.push_events({"$set": {"status": "withdrawn"}}, [event("e1")]))

    assert db.ideas.find_one({"_id": "i1"})["_outbox"] == [event("e1")]


def test_pending_filter_finds_exactly_the_documents_with_pending_events(db: Any) -> None:
    store.ensure_indexes(db, {"ideas": [outbox.INDEX]})
    db.ideas.insert_many([
        outbox.with_events({"_id": "pending-one"}, [event("e1")]),
        outbox.with_events({"_id": "pending-two"}, [event("e2"), event("e3")]),
        outbox.with_events({"_id": "emptied"}, []),
        {"_id": "never-had-events"},
    ])

    pending = db.ideas.find(outbox.pending_filter(), {outbox.FIELD: 1}).sort("_id", 1)

    assert ids(pending) == ["pending-one", "pending-two"]
    assert db.ideas.count_documents(outbox.pending_filter()) == 2


def test_pull_removes_exactly_the_named_events(db: Any) -> None:
    db.ideas.insert_many([
        outbox.with_events({"_id": "i1"}, [event("e1"), event("e2"), event("e3")]),
        outbox.with_events({"_id": "i2"}, [event("e4")]),
        outbox.with_events({"_id": "i3"}, [event("e5")]),
    ])

    # The relay's removal: one write for a published batch, naming each published event.
    result = db.ideas.update_many(
        {"_id": {"$in": ["i1", "i2"]}},
        {"$pull": {outbox.FIELD: {"id": {"$in": ["e1", "e3", "e4"]}}}})

    assert result.matched_count == 2
    assert [e["id"] for e in db.ideas.find_one({"_id": "i1"})[outbox.FIELD]] == ["e2"]
    assert db.ideas.find_one({"_id": "i2"})[outbox.FIELD] == []
    assert [e["id"] for e in db.ideas.find_one({"_id": "i3"})[outbox.FIELD]] == ["e5"]
    assert ids(db.ideas.find(outbox.pending_filter()).sort("_id", 1)) == ["i1", "i3"]


# The inbox --------------------------------------------------------------------------------------------


def test_apply_once_changes_the_document_once_per_event(db: Any) -> None:
    db.ideas.insert_one({"_id": "i1", "likes": 0})

    first = inbox.apply_once(db.ideas, {"_id": "i1"}, {"$inc": {"likes": 1}}, "e1")
    again = inbox.apply_once(db.ideas, {"_id": "i1"}, {"$inc": {"likes": 1}}, "e1")
    other = inbox.apply_once(db.ideas, {"_id": "i1"}, {"$inc": {"likes": 1}}, "e2")

    assert (first, again, other) == (True, False, True)
    assert db.ideas.find_one({"_id": "i1"}) == {"_id": "i1", "likes": 2, inbox.FIELD: ["e1", "e2"]}


def test_apply_once_on_a_missing_document_is_false(db: Any) -> None:
    assert inbox.apply_once(db.ideas, {"_id": "nope"}, {"$set": {"status": "matched"}}, "e1") is False
    assert db.ideas.count_documents({}) == 0


def test_apply_once_stores_effect_and_new_events_in_one_write(db: Any) -> None:
    db.ideas.insert_one({"_id": "i1", "status": "open", "version": 1})
    update = outbox.push_events({"$set": {"status": "matched"}, "$inc": {"version": 1}},
                                [event("out-1", "idea.matched")])

    assert inbox.apply_once(db.ideas, {"_id": "i1"}, update, "in-1") is True
    assert inbox.apply_once(db.ideas, {"_id": "i1"}, update, "in-1") is False

    doc = db.ideas.find_one({"_id": "i1"})
    assert (doc["status"], doc["version"], doc[inbox.FIELD]) == ("matched", 2, ["in-1"])
    assert [e["id"] for e in doc[outbox.FIELD]] == ["out-1"]


def test_inbox_keeps_only_the_latest_ids(db: Any) -> None:
    db.ideas.insert_one({"_id": "i1", "seen": 0})
    event_ids = [f"e{n}" for n in range(inbox.KEEP + 5)]

    for event_id in event_ids:
        assert inbox.apply_once(db.ideas, {"_id": "i1"}, {"$inc": {"seen": 1}}, event_id)

    doc = db.ideas.find_one({"_id": "i1"})
    assert doc["seen"] == inbox.KEEP + 5
    assert doc[inbox.FIELD] == event_ids[-inbox.KEEP:]  # the oldest five fell off the front
    assert inbox.apply_once(db.ideas, {"_id": "i1"}, {"$inc": {"seen": 1}}, event_ids[-1]) is False


def test_insert_once_inserts_a_derived_id_once(db: Any) -> None:
    document = {"_id": inbox.derived_id("e1", "notification", "p1"), "channel": "email"}

    assert inbox.insert_once(db.notifications, document) is True
    assert inbox.insert_once(db.notifications, {**document, "channel": "webhook"}) is False
    assert list(db.notifications.find()) == [document]


# Query and update operators ---------------------------------------------------------------------------


def test_in_matches_scalars_and_array_elements(db: Any) -> None:
    db.ideas.insert_many([
        {"_id": "i1", "status": "open", "tags": ["bike", "climate"]},
        {"_id": "i2", "status": "matched", "tags": ["youth"]},
        {"_id": "i3", "status": "withdrawn", "tags": []},
    ])

    assert ids(db.ideas.find({"status": {"$in": ["open", "matched"]}}).sort("_id", 1)) == ["i1", "i2"]
    assert ids(db.ideas.find({"tags": {"$in": ["climate", "youth"]}}).sort("_id", 1)) == ["i1", "i2"]
    assert ids(db.ideas.find({"_id": {"$in": []}})) == []


def test_ne_on_an_array_field_means_not_among_the_elements(db: Any) -> None:
    db.ideas.insert_many([
        {"_id": "has-it", "_inbox": ["e1", "e2"]},
        {"_id": "has-other", "_inbox": ["e2"]},
        {"_id": "empty", "_inbox": []},
        {"_id": "no-field"},
    ])

    assert ids(db.ideas.find(inbox.unseen("e1")).sort("_id", 1)) == ["empty", "has-other", "no-field"]


def test_exists(db: Any) -> None:
    db.participants.insert_many([{"_id": "p1", "erased_at": None}, {"_id": "p2"}])

    assert ids(db.participants.find({"erased_at": {"$exists": True}})) == ["p1"]  # null counts as present
    assert ids(db.participants.find({"erased_at": {"$exists": False}})) == ["p2"]


def test_elem_match_needs_one_element_to_match_every_condition(db: Any) -> None:
    db.ideas.insert_many([
        {"_id": "one-element", "_outbox": [event("e1", "idea.matched", 2)]},
        {"_id": "split", "_outbox": [event("e2", "idea.matched", 1), event("e3", "idea.submitted", 2)]},
    ])

    found = db.ideas.find({"_outbox": {"$elemMatch": {"type": "idea.matched", "version": 2}}})
    assert ids(found) == ["one-element"]
    both_anywhere = db.ideas.find({"_outbox.type": "idea.matched", "_outbox.version": 2}).sort("_id", 1)
    assert ids(both_anywhere) == ["one-element", "split"]  # why $elemMatch is needed


def test_add_to_set_adds_a_value_once(db: Any) -> None:
    db.projects.insert_one({"_id": "pr1", "members": ["p1"]})

    added = db.projects.update_one({"_id": "pr1"}, {"$addToSet": {"members": "p2"}})
    again = db.projects.update_one({"_id": "pr1"}, {"$addToSet": {"members": "p2"}})
    db.projects.update_one({"_id": "pr1"}, {"$addToSet": {"members": {"$each": ["p1", "p3"]}}})

    assert (added.modified_count, again.matched_count, again.modified_count) == (1, 1, 0)
    assert db.projects.find_one({"_id": "pr1"})["members"] == ["p1", "p2", "p3"]


def test_unset_removes_fields(db: Any) -> None:
    db.participants.insert_one({"_id": "p1", "name": "Anna", "email": "anna@example.org",
                                "city": "karlsruhe"})

    db.participants.update_one({"_id": "p1"}, {"$unset": {"name": "", "email": "", "never-there": ""}})

    assert db.participants.find_one({"_id": "p1"}) == {"_id": "p1", "city": "karlsruhe"}


# Values -----------------------------------------------------------------------------------------------


def test_datetimes_round_trip_tz_aware(db: Any) -> None:
    moscow = timezone(timedelta(hours=3))
    workshop = datetime(2021, 7, 24, 13, 30, 15, 123456, tzinfo=moscow)
    db.rounds.insert_one({"_id": "r1", "kickoff": workshop})

    stored = db.rounds.find_one({"_id": "r1"})["kickoff"]

    assert stored.utcoffset() == timedelta(0)  # tz_aware=True gives aware datetimes in UTC back
    # BSON keeps milliseconds: the microseconds beyond them are dropped, the instant is kept.
    assert stored == workshop.replace(microsecond=123000)
    assert stored == datetime(2021, 7, 24, 10, 30, 15, 123000, tzinfo=UTC)
    assert db.rounds.count_documents({"kickoff": {"$gte": datetime(2021, 7, 24, 10, 30, tzinfo=UTC)}}) == 1
    assert db.rounds.count_documents({"kickoff": {"$lt": datetime(2021, 7, 24, 12, 0, tzinfo=moscow)}}) == 0


def test_ping_answers(db: Any) -> None:
    assert store.ping(db) is None  # raises when the store does not answer


# What the ideas repository's queries use ---------------------------------------------------------------


def test_case_insensitive_regex_matches_cyrillic_and_umlauts(db: Any) -> None:
    import re

    db.ideas.insert_many([
        {"_id": "a", "title": "Фестиваль молодёжной культуры"},
        {"_id": "b", "title": "Stadtbegrünung und Klima"},
        {"_id": "c", "title": "Hackathon"},
    ])
    def search(text: str) -> list[Any]:
        return ids(db.ideas.find({"title": {"$regex": re.escape(text), "$options": "i"}}).sort("_id", 1))

    assert search("ФЕСТИВАЛЬ") == ["a"]
    assert search("BEGRÜNUNG") == ["b"]
    assert search("hack") == ["c"]
    assert search("(.*)") == []  # escaped: a user's text is never a pattern


def test_or_across_fields_including_an_array(db: Any) -> None:
    db.ideas.insert_many([
        {"_id": "a", "title": "Garten", "tags": []},
        {"_id": "b", "title": "Hackathon", "tags": ["garten"]},
        {"_id": "c", "title": "Festival", "tags": ["music"]},
    ])
    query = {"$or": [{"title": {"$regex": "garten", "$options": "i"}},
                     {"tags": {"$regex": "garten", "$options": "i"}}]}
    assert ids(db.ideas.find(query).sort("_id", 1)) == ["a", "b"]


def test_cursor_paging_by_descending_id(db: Any) -> None:
    db.ideas.insert_many([{"_id": f"idea_{i:03d}", "city": "k"} for i in range(7)])
    first = ids(db.ideas.find({"city": "k"}).sort("_id", -1).limit(3))
    second = ids(db.ideas.find({"city": "k", "_id": {"$lt": first[-1]}}).sort("_id", -1).limit(3))
    assert first == ["idea_006", "idea_005", "idea_004"] and second == ["idea_003", "idea_002", "idea_001"]


def test_time_sortable_ids_sort_in_creation_order(db: Any) -> None:
    made = [store.new_id("idea") for _ in range(50)]
    db.ideas.insert_many([{"_id": i} for i in made])
    assert ids(db.ideas.find({}).sort("_id", 1)) == sorted(made)


def test_replace_one_conditional_on_version(db: Any) -> None:
    db.people.insert_one({"_id": "p", "name": "Anna", "email": "a@example.org", "version": 1})
    assert db.people.replace_one({"_id": "p", "version": 2}, {"erased": True}).matched_count == 0
    assert db.people.replace_one({"_id": "p", "version": 1}, {"erased": True, "version": 2}).matched_count == 1
    assert db.people.find_one({"_id": "p"}) == {"_id": "p", "erased": True, "version": 2}


def test_sparse_unique_index_allows_many_documents_without_the_field(db: Any) -> None:
    store.ensure_indexes(db, {"people": [Index(keys=[("email_key", 1)], unique=True, sparse=True)]})
    db.people.insert_many([{"_id": "a"}, {"_id": "b"}, {"_id": "c", "email_key": "k:x@example.org"}])
    with pytest.raises(DuplicateKeyError):
        db.people.insert_one({"_id": "d", "email_key": "k:x@example.org"})
