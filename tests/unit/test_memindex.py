"""The in-memory store's indexes give the same answers as mongomock's scans, through every kind of write."""

from __future__ import annotations

import copy
import random
from datetime import UTC, datetime, timedelta, timezone

import mongomock
import pytest
from mongomock import helpers
from mongomock.filtering import filter_applies
from pymongo.errors import DuplicateKeyError

from services import store  # noqa: F401  # installs the indexes

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def scanned(collection, query):
    """The reference answer: every document checked with mongomock's matcher, in insertion order."""
    return [d for d in collection.find({}) if filter_applies(query, d)]


@pytest.fixture
def things():
    collection = mongomock.MongoClient(tz_aware=True).db.things
    collection.create_index([("key", 1)], unique=True, sparse=True)
    collection.create_index([("city", 1), ("_id", -1)])
    collection.create_index([("synced_at", 1)])
    collection.create_index([("_outbox.id", 1)])
    collection.create_index([("sides.idea_id", 1)])
    return collection


def queries(rng: random.Random) -> list[dict]:
    city = rng.choice(["ka", "kr", "na", 3, None])
    return [
        {"city": city},
        {"city": {"$in": ["ka", "na", 7]}},
        {"city": "ka", "n": {"$gt": 5}},
        {"synced_at": {"$gte": T0 + timedelta(seconds=rng.randint(0, 60))}},
        {"synced_at": {"$gt": T0, "$lt": T0 + timedelta(seconds=30)}},
        {"_outbox.id": {"$exists": True}},
        {"_id": f"d{rng.randint(0, 40)}"},
        {"_id": {"$in": [f"d{rng.randint(0, 40)}" for _ in range(5)]}, "city": "ka"},
        {"key": f"k{rng.randint(0, 40)}"},
        {"sides.idea_id": f"i{rng.randint(0, 5)}"},
        {"tags": "x"},
        # $or of indexed branches (the union of their candidates), nested, and with a branch no index narrows
        {"$or": [{"city": city}, {"key": f"k{rng.randint(0, 40)}"}]},
        {"$or": [{"city": "ka", "n": {"$lt": 5}}, {"synced_at": {"$lt": T0 + timedelta(seconds=20)}}],
         "n": {"$gte": 2}},
        {"$or": [{"city": "kr"}, {"n": 3}]},
        {"$or": [{"_outbox.id": {"$exists": True}}, {"city": None}]},
        {"$and": [{"city": {"$in": ["ka", "kr"]}}, {"$or": [{"key": "k1"}, {"sides.idea_id": "i2"}]}]},
        {"$or": [{"$and": [{"city": "na"}, {"n": {"$gt": 2}}]}, {"_id": "d3"}, {"key": "k4"}]},
    ]


def test_indexed_queries_answer_as_scans_through_random_writes(things):
    rng = random.Random(5)
    for step in range(600):
        doc_id = f"d{rng.randint(0, 40)}"
        action = rng.random()
        try:
            if action < 0.3:
                things.insert_one({
                    "_id": doc_id, "key": f"k{rng.randint(0, 40)}", "city": rng.choice(["ka", "kr", "na", 3, ["ka"]]),
                    "n": rng.randint(0, 10), "synced_at": T0 + timedelta(seconds=rng.randint(0, 60)),
                    "_outbox": [{"id": f"e{step}"}] if rng.random() < 0.5 else [],
                    "sides": [{"idea_id": f"i{rng.randint(0, 5)}"}, {"idea_id": f"i{rng.randint(0, 5)}"}],
                    "tags": rng.choice([["x", "y"], "x", []]),
                })
            elif action < 0.5:
                things.update_one({"_id": doc_id}, {"$set": {"city": rng.choice(["ka", "kr", None]),
                                                             "synced_at": T0 + timedelta(seconds=rng.randint(0, 60))}})
            elif action < 0.6:
                things.update_many({"city": "kr"}, {"$push": {"_outbox": {"id": f"p{step}"}}, "$inc": {"n": 1}})
            elif action < 0.7:
                things.update_many({"_outbox.id": {"$exists": True}}, {"$pull": {"_outbox": {"id": {"$exists": True}}}})
            elif action < 0.78:
                things.update_one({"_id": doc_id}, {"$set": {"key": f"k{rng.randint(0, 40)}"}})
            elif action < 0.86:
                things.update_one({"key": f"k{rng.randint(0, 40)}"}, {"$set": {"city": "na"}}, upsert=True)
            elif action < 0.93:
                things.replace_one({"_id": doc_id}, {"city": "kr", "n": 1, "synced_at": T0})
            elif action < 0.95:
                things.update_many({"$or": [{"city": "na"}, {"key": f"k{rng.randint(0, 40)}"}]},
                                   {"$set": {"city": rng.choice(["ka", "kr"])}, "$inc": {"n": 1}})
            elif action < 0.97:
                things.delete_many({"city": rng.choice(["ka", "na"]), "n": {"$lt": 3}})
            else:
                things.find_one_and_update({"city": "ka"}, {"$unset": {"city": ""}})
        except DuplicateKeyError:
            pass
        for query in queries(rng):
            assert list(things.find(query)) == scanned(things, query), (step, query)


def test_a_unique_key_stays_unique_when_an_update_changes_it(things):
    things.insert_one({"_id": "a", "key": "k1"})
    things.insert_one({"_id": "b", "key": "k2"})
    with pytest.raises(DuplicateKeyError):
        things.update_one({"_id": "b"}, {"$set": {"key": "k1"}})
    assert things.find_one({"key": "k2"})["_id"] == "b"  # rolled back, and the index with it
    assert [d["_id"] for d in things.find({"key": "k1"})] == ["a"]
    with pytest.raises(DuplicateKeyError):
        things.insert_one({"_id": "c", "key": "k2"})


def test_dropping_a_collection_forgets_its_documents(things):
    things.insert_one({"_id": "a", "city": "ka"})
    things.drop()
    assert list(things.find({"city": "ka"})) == []
    things.insert_one({"_id": "a", "city": "ka"})
    assert [d["_id"] for d in things.find({"city": "ka"})] == ["a"]


def test_an_or_of_indexed_branches_is_answered_from_the_index():
    from services import memindex

    due = mongomock.MongoClient(tz_aware=True).db.due
    due.create_index([("status", 1), ("next_attempt_at", 1)])
    due.insert_many([{"_id": f"n{i}", "status": "delivered", "channel": "inbox"} for i in range(200)])
    due.insert_one({"_id": "p", "status": "pending", "channel": "email", "next_attempt_at": T0})
    due.insert_one({"_id": "s", "status": "sending", "channel": "email", "lease_until": T0})
    query = {"$or": [{"status": "pending", "next_attempt_at": {"$lte": T0}},
                     {"status": "sending", "lease_until": {"$lt": T0 + timedelta(seconds=1)}}], "channel": "email"}
    assert memindex._indexes(due._store).plan(query) == {"p", "s"}  # not the 200 delivered ones
    assert [d["_id"] for d in due.find(query)] == ["p", "s"] == [d["_id"] for d in scanned(due, query)]


def some_value(rng: random.Random):
    """A value of any kind a range condition may meet: dates, numbers, strings, and those no order holds."""
    return rng.choice([
        lambda: T0 + timedelta(seconds=rng.randint(0, 60)),
        lambda: T0 + timedelta(seconds=rng.randint(0, 60)),
        lambda: rng.randint(-5, 10),
        lambda: rng.randint(-5, 10) + 0.5,
        lambda: float(rng.randint(-5, 10)),  # equals an int
        lambda: rng.choice(["a", "b", "bb", "c", ""]),
        lambda: rng.choice([None, True, False, float("nan"), [3, "b"], [], {"x": 1}]),
    ])()


def arrays(collection) -> list:
    return [d["_id"] for d in collection.find({}) if isinstance(d.get("v"), list)]


def range_queries(rng: random.Random) -> list[dict]:
    def bound():
        return rng.choice([
            T0 + timedelta(seconds=rng.randint(-5, 65)), rng.randint(-7, 12), rng.randint(-7, 12) + 0.5,
            rng.choice(["", "a", "b", "bz", "d"]),
        ])

    low, high = bound(), bound()
    return [
        {"v": {"$gte": low}},
        {"v": {"$gt": low}},
        {"v": {"$lt": high}},
        {"v": {"$lte": high}},
        {"v": {"$gt": low, "$lte": high}},
        {"v": {"$gte": T0 + timedelta(seconds=rng.randint(0, 60)), "$lt": T0 + timedelta(seconds=rng.randint(0, 60))}},
        {"v": {"$gte": rng.randint(-5, 10), "$lte": rng.randint(-5, 10) + 0.5}},
        {"v": {"$gt": 3, "$lt": "c"}},  # bounds of two kinds
        {"v": {"$gte": float("nan")}},
        {"v": {"$lt": T0 + timedelta(seconds=30)}, "city": rng.choice(["ka", "kr"])},
        {"$or": [{"v": {"$lte": rng.randint(-5, 10)}}, {"v": {"$gt": T0 + timedelta(seconds=rng.randint(0, 60))}}]},
    ]


def test_range_conditions_answer_as_scans_through_moving_values():
    from services import memindex

    rng = random.Random(11)
    collection = mongomock.MongoClient(tz_aware=True).db.ranged
    collection.create_index([("v", 1)])
    for step in range(800):
        doc_id = f"d{rng.randint(0, 60)}"
        action = rng.random()
        if action < 0.35:
            collection.replace_one({"_id": doc_id}, {"v": some_value(rng), "city": rng.choice(["ka", "kr"])},
                                   upsert=True)
        elif action < 0.6:
            collection.update_one({"_id": doc_id}, {"$set": {"v": some_value(rng)}})
        elif action < 0.7:  # numbers move by an increment, dates by a new value: their place in the order changes
            collection.update_many({"v": {"$gte": 0, "$lt": 5, "$type": "number"}, "_id": {"$nin": arrays(collection)}},
                                   {"$inc": {"v": rng.choice([3, -4, 0.5])}})
        elif action < 0.78:
            collection.update_many({"v": {"$lt": T0 + timedelta(seconds=20)}},
                                   {"$set": {"v": T0 + timedelta(seconds=rng.randint(20, 60))}})
        elif action < 0.86:
            collection.update_one({"_id": doc_id}, {"$unset": {"v": ""}})
        elif action < 0.94:
            collection.delete_one({"_id": doc_id})
        else:
            collection.delete_many({"v": {"$gt": rng.choice([T0 + timedelta(seconds=55), 8, "bb"])}})
        for query in range_queries(rng) + [{"v": some_value(rng)}]:
            assert list(collection.find(query)) == scanned(collection, query), (step, query)
        index = memindex._indexes(collection._store).fields["v"]
        ordered = [entry for entries in index.ordered.values() for entry in entries]
        assert all(entries == sorted(entries) for entries in index.ordered.values())
        assert {entry[2] for entry in ordered} | index.others == set(index.value_of) == {
            d["_id"] for d in collection.find({}) if "v" in d}
        assert len(ordered) + len(index.others) == len(index.value_of)


def test_a_range_on_an_indexed_field_checks_only_the_documents_in_range():
    from services import memindex

    synced = mongomock.MongoClient(tz_aware=True).db.synced
    synced.create_index([("synced_at", 1)])
    synced.insert_many([{"_id": i, "synced_at": T0 + timedelta(seconds=i)} for i in range(1000)])
    synced.insert_one({"_id": "n", "synced_at": 5})  # another kind: not comparable, so a candidate
    synced.insert_one({"_id": "l", "synced_at": [T0]})  # no scalar: a candidate
    query = {"synced_at": {"$gte": T0 + timedelta(seconds=995)}}
    as_stored = helpers.patch_datetime_awareness_in_document(query)  # what find() plans with: naive UTC
    assert memindex._indexes(synced._store).plan(as_stored) == {995, 996, 997, 998, 999, "n", "l"}
    assert [d["_id"] for d in synced.find(query)] == [995, 996, 997, 998, 999] == [
        d["_id"] for d in scanned(synced, query)]


@pytest.mark.parametrize("kind", ["aware", "naive", "number", "string"])
def test_a_range_answered_by_the_index_alone_is_what_a_scan_finds(kind: str):
    """Values all of the bounds' kind: the index's candidates are the answer, with no document checked again."""
    from services import memindex

    rng = random.Random(17)
    naive = datetime(2026, 1, 1)

    def value():
        if kind == "aware":
            return T0 + timedelta(microseconds=rng.randint(0, 5_000_000))  # stored to the millisecond
        if kind == "naive":
            return naive + timedelta(microseconds=rng.randint(0, 5_000_000))
        if kind == "number":
            return rng.choice([rng.randint(-50, 50), rng.randint(-50, 50) + 0.5, float(rng.randint(-50, 50))])
        return "".join(rng.choice("abcÄä") for _ in range(rng.randint(0, 3)))

    client = mongomock.MongoClient(tz_aware=kind == "aware")
    collection, twin = client.db[f"exact_{kind}"], client.db[f"scanned_{kind}"]  # the twin has no index
    collection.create_index([("v", 1)])
    indexes = memindex._indexes(collection._store)
    checked: list[dict] = []
    original = memindex.filter_applies

    for step in range(300):
        doc_id = rng.randint(0, 80)
        written, action = value(), rng.random()
        for target in (collection, twin):
            if action < 0.5:
                target.replace_one({"_id": doc_id}, {"v": written}, upsert=True)
            elif action < 0.75:  # in place
                target.update_one({"_id": doc_id}, {"$set": {"v": written}})
            elif action < 0.85:  # the field gone: in no range
                target.update_one({"_id": doc_id}, {"$unset": {"v": ""}})
            else:
                target.delete_one({"_id": doc_id})
        low, high = sorted([value(), value()])
        for condition in ({"$gte": low}, {"$gt": low}, {"$lt": high}, {"$lte": high}, {"$gte": low, "$lt": high},
                          {"$gt": low, "$lte": high}):
            query = {"v": condition}
            as_stored = helpers.patch_datetime_awareness_in_document(query)  # what find() plans with: naive UTC
            assert indexes.exact(as_stored), (step, query)
            memindex.filter_applies = lambda q, d: (d and checked.append(q)) or original(q, d)  # {}: validation
            try:
                found = list(collection.find(query))
            finally:
                memindex.filter_applies = original
            # mongomock's own answer, by its scan (which stores and compares datetimes to the millisecond)
            assert found == list(twin.find(query)), (step, query)
    assert not checked, "the documents in range were taken as they are"
    collection.insert_one({"_id": "other", "v": None})  # a value of no kind in an order: a candidate of every range
    assert not indexes.exact({"v": {"$gte": value()}})


def test_a_document_changed_while_a_range_is_answered_is_checked_again(monkeypatch: pytest.MonkeyPatch):
    """Another thread may change a candidate between the index's answer and the read: not taken as it is."""
    from services import memindex

    collection = mongomock.MongoClient(tz_aware=True).db.racing
    collection.create_index([("v", 1)])
    collection.insert_many([{"_id": i, "v": i} for i in range(1, 11)])
    original = memindex.StoreIndexes.exact

    def racing(self, query):
        answer = original(self, query)
        monkeypatch.setattr(memindex.StoreIndexes, "exact", original)  # once
        collection.update_one({"_id": 3}, {"$set": {"v": -5}})  # out of range, same kind
        collection.replace_one({"_id": 4}, {"v": "four"})  # another kind
        collection.update_one({"_id": 5}, {"$unset": {"v": ""}})  # gone
        return answer

    monkeypatch.setattr(memindex.StoreIndexes, "exact", racing)
    assert [d["_id"] for d in collection.find({"v": {"$gt": 0}})] == [1, 2, 6, 7, 8, 9, 10]


def test_plain_projections_give_what_mongomocks_own_gives():
    """Inclusions of top-level fields are copied by memindex; the result equals mongomock's, in its key order."""
    from collections import OrderedDict

    from bson import ObjectId

    from services import memindex

    collection = mongomock.MongoClient(tz_aware=True).db.projected
    rng = random.Random(5)
    names = ["version", "city", "vec", "tags", "sides", "synced_at", "n"]
    values = [1, 2.5, "Краснодар", b"\x01\x02", None, True, ["a", {"b": [1, 2]}], {"x": {"y": 1}}, ObjectId(),
              datetime(2026, 11, 26, 4, 5, 6, 789000)]
    specs = [{"version": 1}, {"version": True, "city": 1}, {"_id": 0, "tags": 1}, {"_id": 1, "sides": 1, "n": 1},
             {"missing": 1}, {"_id": 0, "version": 1, "vec": 1, "sides": 1},
             # mongomock's own path: exclusions, dotted, operators, _id alone, empty
             {"version": 0}, {"sides.b": 1}, {"tags": {"$slice": 1}}, {"_id": 1}, {}, {"_id": 0}]
    def outcome(project, *args):
        try:
            result = project(*args)
        except Exception as exc:  # noqa: BLE001 - compared
            return type(exc)
        return type(result), list(result.items())

    for i in range(300):
        doc = {name: rng.choice(values) for name in rng.sample(names, rng.randint(0, len(names)))}
        if i % 7:
            doc = {"_id": i, **doc} if i % 2 else {**doc, "_id": i}  # _id first or last in the document
        for spec in specs:
            for container in (dict, OrderedDict):
                ours, theirs = (outcome(project, collection, doc, dict(spec), container)
                                for project in (memindex._copy_only_fields, memindex._project))
                assert ours == theirs, (doc, spec)
    stored = {"_id": 1, "tags": ["a"], "sides": [{"b": 1}]}
    copied = memindex._copy_only_fields(collection, stored, {"tags": 1, "sides": 1}, dict)
    copied["tags"].append("b")
    copied["sides"][0]["b"] = 2
    assert stored == {"_id": 1, "tags": ["a"], "sides": [{"b": 1}]}, "a projection shares nothing with the store"
    collection.insert_one({"_id": "x", "a": 1, "b": 2})
    assert collection.find_one({}, {"a": 1}) == {"a": 1, "_id": "x"}
    with pytest.raises(ValueError):
        collection.find_one({}, {"a": 1, "b": 0})  # mixed: mongomock's own error


def test_the_quicker_datetime_walks_give_what_mongomocks_own_give():
    """memindex's walks over stored documents, queries and results, and its deep copy, equal mongomock's,
    type for type; the results share nothing with their input."""
    from collections import OrderedDict

    from bson import SON, ObjectId, Timestamp

    from services import memindex

    def typed(value):  # the value with the type of every part spelled out: dict == OrderedDict is not enough
        if isinstance(value, dict):
            return type(value), [(k, typed(v)) for k, v in value.items()]
        if isinstance(value, list | tuple):
            return type(value), [typed(v) for v in value]
        return type(value), value

    rng = random.Random(11)
    leaves = [1, 0, -7, 2.5, float("inf"), True, False, None, "", "Краснодар", b"\x00\x01", ObjectId(),
              datetime(2026, 11, 26, 4, 5, 6, 789123), datetime(2026, 11, 26, 4, 5, 6, 789123, tzinfo=UTC),
              datetime(2026, 11, 26, 7, 5, 6, 999999, tzinfo=timezone(timedelta(hours=3))), Timestamp(5, 1)]

    def value(depth: int):
        kind = rng.randrange(7 if depth < 4 else 1)
        if kind == 0 or depth >= 4:
            return rng.choice(leaves)
        items = [(f"k{i}", value(depth + 1)) for i in range(rng.randint(0, 4))]
        return [dict, OrderedDict, SON, dict, list, tuple][kind - 1](items) if kind < 4 else (
            [v for _, v in items] if kind in (4, 6) else tuple(v for _, v in items))

    for _ in range(2000):
        doc = value(0)
        assert typed(memindex._patched_datetimes(doc)) == typed(memindex._patch_datetimes(doc)), doc
        assert typed(memindex._made_aware(doc)) == typed(memindex._aware_datetimes(doc)), doc
        assert typed(memindex._deepcopy(doc)) == typed(copy.deepcopy(doc)), doc
    stored = {"tags": ["a"], "sides": [{"b": 1}]}
    walked = memindex._patched_datetimes(stored)
    walked["tags"].append("b")
    walked["sides"][0]["b"] = 2
    assert stored == {"tags": ["a"], "sides": [{"b": 1}]}, "the walk's result shares nothing with its input"
    assert memindex._made_aware(stored) == stored and memindex._made_aware(stored)["sides"] is not stored["sides"]
    assert helpers.patch_datetime_awareness_in_document is memindex._patched_datetimes  # installed
    copied = memindex._deepcopy(stored)
    copied["sides"][0]["b"] = 3
    assert stored == {"tags": ["a"], "sides": [{"b": 1}]}, "the deep copy shares nothing with its original"
    assert helpers.make_datetime_timezone_aware_in_document is memindex._made_aware
    assert mongomock.collection.copy.deepcopy is memindex._deepcopy


def test_the_quicker_in_finds_what_mongomocks_own_finds():
    """`$in` with its list read once per query equals mongomock's, for any document value and list, and notices
    a list changed in place between two queries."""
    import re

    from bson import ObjectId
    from mongomock import filtering

    from services import memindex

    rng = random.Random(3)
    oid = ObjectId()
    pool = [1, 1.0, True, 0, False, 2, "a", "b", "A", None, oid, ObjectId(oid), T0, T0.replace(tzinfo=None),
            float("nan"), b"a", ["a"], {"a": 1}, ("a",), re.compile("^a")]

    def value():
        roll = rng.random()
        if roll < 0.2:
            return [rng.choice(pool) for _ in range(rng.randint(0, 3))]
        if roll < 0.25:
            return filtering.NOTHING
        return rng.choice(pool)

    for _ in range(3000):
        search = [rng.choice(pool) for _ in range(rng.randint(0, 6))]
        for _ in range(3):
            doc = value()
            assert memindex._quick_in(doc, search) == memindex._in_op(doc, search), (doc, search)
        if search and rng.random() < 0.5:
            search[rng.randrange(len(search))] = rng.choice(pool)  # changed in place: read again
            doc = value()
            assert memindex._quick_in(doc, search) == memindex._in_op(doc, search), (doc, search)
    collection = mongomock.MongoClient(tz_aware=True).db.inq
    collection.insert_many([{"_id": i, "tags": [f"t{i % 3}"]} for i in range(10)])
    assert [d["_id"] for d in collection.find({"_id": {"$in": [2, 3, 99]}})] == [2, 3]
    assert [d["_id"] for d in collection.find({"tags": {"$in": ["t1"]}, "_id": {"$nin": [1]}})] == [4, 7]
    assert filtering._filterer_inst._operator_map["$in"] is memindex._quick_in  # installed
