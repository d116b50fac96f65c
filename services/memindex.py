"""Indexes for mongomock, so that the in-memory store (`mongomock://`) answers like a small MongoDB.

mongomock checks every document against every query, and every document against the unique keys of each
insert: each query and insert costs O(documents). The platform's services query by `_id`, by indexed
keys (a unique `key` or `pair`, `recipient`, `city`...), by `synced_at` ranges and for pending outbox
events, thousands of times a second under load, so in a long run the scans, not the work, dominate.

This module keeps, for the first field of every index created on a mongomock collection (the top-level
part of it: `sides.idea_id` indexes `sides`), a map of document -> value, kept in step with every write
mongomock makes (insert, update in place, delete, drop). A query then checks only the candidate documents
the index can not rule out, with mongomock's own matcher: the answer is the same as a scan's (the index
only prunes documents that surely do not match), in the same order (documents keep their insertion rank).
A range on a field whose values are all of the bounds' kind is answered by the index itself, each document
checked again by a plain comparison instead of the matcher (`StoreIndexes.exact`).

Installed once, when `services.store` is imported; collections without indexes are scanned as before.

It reaches into mongomock's internals (the hooks `install` names; it checks them and leaves mongomock as it is,
with a warning, when a release lacks one), which issue 18 allows a speed layer only where it pays: side by side
in the pipeline bench (2 x 2,700 ideas at 30/s, one stack with it, one without), the whole stack spent 35.7 ms
of CPU an idea with it and 64.3 ms without (notify 3.8 / 17.2, ideas 5.3 / 10.2, matching 15.0 / 24.5), and the
one without could not keep up. tests/contract holds the answers to MongoDB's.
"""

from __future__ import annotations

import bisect
import copy
import itertools
import math
import operator
import threading
import warnings
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

import mongomock
from mongomock import filtering
from mongomock.collection import Collection
from mongomock.filtering import filter_applies
from mongomock.store import CollectionStore

_SCALARS = (str, int, float, datetime)
_RANGE = {"$gt", "$gte", "$lt", "$lte"}


def _scalar(value: Any) -> bool:
    """Hashable values that equal only values of their own kind in MongoDB's eyes (no bool: True == 1)."""
    return isinstance(value, _SCALARS) and not isinstance(value, bool)


def _bracket(value: Any) -> str | None:
    """The kind of scalar a value is ordered among, or None when it has no place in an order (NaN).

    Values of one bracket compare with each other in Python; values of two brackets do not (a TypeError:
    a string and a number, a naive and an aware datetime), so each bracket keeps a sorted list of its own.
    """
    if isinstance(value, str):
        return "str"
    if isinstance(value, datetime):
        return "aware" if value.utcoffset() is not None else "naive"
    if isinstance(value, float) and math.isnan(value):
        return None
    return "number"


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, list | dict) and not value)


_COMPARE = {"$gt": operator.gt, "$gte": operator.ge, "$lt": operator.lt, "$lte": operator.le}


def _within(value: Any, condition: Mapping[str, Any], bracket: str) -> bool | None:
    """Whether a value of the bounds' kind lies within them; None for a value of another kind (the matcher's)."""
    if not _scalar(value) or _bracket(value) != bracket:
        return None
    return all(_COMPARE[op](value, bound) for op, bound in condition.items())


def _first(entry: tuple[Any, int, Any]) -> Any:
    return entry[0]


class FieldIndex:
    """One top-level field: its value in each document that has it, and the documents of each scalar value."""

    def __init__(self, field: str) -> None:
        self.field = field
        self.value_of: dict[Any, Any] = {}
        self.ids_of: dict[Any, set[Any]] = {}
        self.others: set[Any] = set()  # no scalar (a list matches by its elements) or NaN: candidates of a range
        # documents whose value holds something (not None, [] or {}): those where `field.sub` may exist. A
        # relay asks for its pending outbox events this way several times a second: few pending among many
        self.filled: set[Any] = set()
        # per bracket, (value, slot, document) sorted: the slot (unique, from put) orders equal values and
        # finds a document's entry again; range conditions bisect these instead of checking every document
        self.ordered: dict[str, list[tuple[Any, int, Any]]] = {}
        self.slot_of: dict[Any, int] = {}
        self._slots = itertools.count()

    def put(self, doc_id: Any, document: Mapping[str, Any]) -> None:
        self.drop(doc_id)
        if self.field not in document:
            return
        value = document[self.field]
        self.value_of[doc_id] = value
        if not _empty(value):
            self.filled.add(doc_id)
        if _scalar(value):
            self.ids_of.setdefault(value, set()).add(doc_id)
            bracket = _bracket(value)
            if bracket is None:
                self.others.add(doc_id)  # NaN: no place in an order, always a candidate of a range
            else:
                slot = self.slot_of[doc_id] = next(self._slots)
                bisect.insort(self.ordered.setdefault(bracket, []), (value, slot, doc_id))
        else:
            self.others.add(doc_id)

    def drop(self, doc_id: Any) -> None:
        if doc_id not in self.value_of:
            return
        value = self.value_of.pop(doc_id)
        self.filled.discard(doc_id)
        if _scalar(value):
            bucket = self.ids_of.get(value)
            if bucket is not None:
                bucket.discard(doc_id)
                if not bucket:
                    del self.ids_of[value]
            slot = self.slot_of.pop(doc_id, None)
            if slot is None:
                self.others.discard(doc_id)
            else:
                entries = self.ordered[_bracket(value)]  # type: ignore[index]
                at = bisect.bisect_left(entries, (value, slot))
                if at < len(entries) and entries[at][1] == slot:
                    del entries[at]
                else:  # not where its value sorts (cannot happen for well-ordered values): find it anyway
                    entries[:] = [e for e in entries if e[1] != slot]
        else:
            self.others.discard(doc_id)

    def candidates(self, key: str, condition: Any) -> set[Any] | None:
        """Documents that may match `key: condition` (a superset), or None when this index cannot tell."""
        if key != self.field:
            if key.startswith(self.field + ".") and condition == {"$exists": True}:
                # `field.sub` exists only where the field holds something (a pending outbox is a non-empty list)
                return set(self.filled)
            return None
        if _scalar(condition):
            return self.ids_of.get(condition, set()) | self.others
        if not isinstance(condition, Mapping) or not condition:
            return None
        if set(condition) == {"$in"} and isinstance(condition["$in"], list | tuple) \
                and all(_scalar(v) for v in condition["$in"]):
            found = set(self.others)
            for value in condition["$in"]:
                found |= self.ids_of.get(value, set())
            return found
        if set(condition) <= _RANGE and all(_scalar(v) for v in condition.values()):
            return self._in_range(condition)
        return None

    def _in_range(self, condition: Mapping[str, Any]) -> set[Any] | None:
        """The documents whose value Python finds within the bounds, or cannot compare with them.

        The set a check of every document gives (`value > bound` and so on, a TypeError making a candidate;
        only NaN, which compares false with everything, is now a candidate too): within the bounds' bracket
        by bisecting its sorted values; every document of another bracket (not comparable), and those in
        `others` (no scalar, or NaN), are candidates. mongomock's matcher then decides, as before.
        """
        brackets = {_bracket(bound) for bound in condition.values()}
        if len(brackets) != 1 or None in brackets:
            return None  # bounds of two kinds, or NaN: let the other conditions (or a scan) decide
        (bracket,) = brackets
        entries = self.ordered.get(bracket, [])
        low, high = 0, len(entries)
        for op, bound in condition.items():
            if op == "$gt":
                low = max(low, bisect.bisect_right(entries, bound, key=_first))
            elif op == "$gte":
                low = max(low, bisect.bisect_left(entries, bound, key=_first))
            elif op == "$lt":
                high = min(high, bisect.bisect_left(entries, bound, key=_first))
            else:
                high = min(high, bisect.bisect_right(entries, bound, key=_first))
        found = set(self.others)
        found.update(entry[2] for entry in entries[low:high])
        for other, more in self.ordered.items():
            if other != bracket:
                found.update(entry[2] for entry in more)
        return found


class StoreIndexes:
    """The indexes of one mongomock collection, and the insertion rank of its documents."""

    def __init__(self) -> None:
        self.fields: dict[str, FieldIndex] = {}
        self.rank: dict[Any, int] = {}
        self._next = itertools.count()
        self.touched: list[Mapping[str, Any]] | None = None  # documents an update in progress may change

    def add(self, field: str, documents: Mapping[Any, Mapping[str, Any]]) -> None:
        if field in self.fields or field == "_id":
            return
        index = FieldIndex(field)
        for doc_id, document in documents.items():
            index.put(doc_id, document)
        self.fields[field] = index

    def put(self, doc_id: Any, document: Mapping[str, Any]) -> None:
        if doc_id not in self.rank:
            self.rank[doc_id] = next(self._next)
        for index in self.fields.values():
            index.put(doc_id, document)

    def drop(self, doc_id: Any) -> None:
        self.rank.pop(doc_id, None)
        for index in self.fields.values():
            index.drop(doc_id)

    def plan(self, query: Any) -> set[Any] | None:
        """The smallest candidate set some index gives for the query's top-level conditions, or None.

        `$or` of branches that can each be planned gives the union of their candidates (a document that
        matches the `$or` matches one branch, so it is a candidate of that branch); `$and` gives the smallest
        of its planned branches, like the top-level conditions it stands for. A branch no index can narrow
        leaves the `$or` to the other conditions (or a scan). notify's senders claim due deliveries with
        `{"$or": [{"status": "pending", ...}, {"status": "sending", ...}]}` on every pass: without this,
        each pass checked every notification ever stored.
        """
        if not isinstance(query, Mapping) or not self.fields:
            return None
        best: set[Any] | None = None
        for key, condition in query.items():
            if key == "$or":
                found = self._plan_or(condition)
            elif key == "$and":
                found = self._plan_and(condition)
            elif key.startswith("$"):
                continue
            else:
                index = self.fields.get(key.split(".", 1)[0])
                found = index.candidates(key, condition) if index is not None else None
            if found is not None and (best is None or len(found) < len(best)):
                best = found
        return best

    def exact(self, query: Any) -> tuple[str, Mapping[str, Any], str] | None:
        """(field, range, kind of its bounds) when `plan(query)` gives exactly the matching documents, else None.

        So far one case, the query by which matching catches up with the changes since its last sync, many
        times a second: one range condition on an indexed field whose values are all of the bounds' kind.
        The candidates are then those Python orders within the bounds, as mongomock's matcher does.
        """
        if not isinstance(query, Mapping) or len(query) != 1:
            return None
        ((key, condition),) = query.items()
        index = self.fields.get(key)
        if index is None or not isinstance(condition, Mapping) or not condition or not set(condition) <= _RANGE \
                or not all(_scalar(v) for v in condition.values()):
            return None
        brackets = {_bracket(v) for v in condition.values()}
        if len(brackets) != 1 or None in brackets or index.others \
                or any(entries for bracket, entries in index.ordered.items() if bracket not in brackets):
            return None
        return key, condition, brackets.pop()  # type: ignore[return-value]

    def _plan_or(self, branches: Any) -> set[Any] | None:
        if not isinstance(branches, list | tuple) or not branches:
            return None
        union: set[Any] = set()
        for branch in branches:
            found = self.plan(branch)
            if found is None:
                return None
            union |= found
        return union

    def _plan_and(self, branches: Any) -> set[Any] | None:
        if not isinstance(branches, list | tuple) or not branches:
            return None
        planned = [found for found in (self.plan(branch) for branch in branches) if found is not None]
        return min(planned, key=len) if planned else None


_lock = threading.Lock()


def _indexes(store: CollectionStore) -> StoreIndexes:
    found = store.__dict__.get("_twincity_indexes")
    if found is None:
        with _lock:
            found = store.__dict__.setdefault("_twincity_indexes", StoreIndexes())
    return found


# --- the hooks -------------------------------------------------------------------------------------------

_store_setitem = CollectionStore.__setitem__
_store_delitem = CollectionStore.__delitem__
_store_drop = CollectionStore.drop
_store_create_index = CollectionStore.create_index
_collection_update = Collection._update
_collection_scan = Collection._iter_documents


def _setitem(self: CollectionStore, key: Any, value: Any) -> None:
    _store_setitem(self, key, value)
    _indexes(self).put(key, value)


def _delitem(self: CollectionStore, key: Any) -> None:
    _store_delitem(self, key)
    _indexes(self).drop(key)


def _drop(self: CollectionStore) -> None:
    _store_drop(self)
    self.__dict__["_twincity_indexes"] = StoreIndexes()


def _create_index(self: CollectionStore, index_name: str, index_dict: Mapping[str, Any]) -> None:
    _store_create_index(self, index_name, index_dict)
    keys = list(index_dict.get("key") or ())
    if keys:
        _indexes(self).add(str(keys[0][0]).split(".", 1)[0], self._documents)


def _update(self: Collection, *args: Any, **kwargs: Any) -> Any:
    """mongomock changes the documents of an update in place: index them again afterwards."""
    indexes = _indexes(self._store)
    outer = indexes.touched
    indexes.touched = [] if outer is None else outer
    try:
        return _collection_update(self, *args, **kwargs)
    finally:
        touched, indexes.touched = indexes.touched, outer
        if outer is None:
            for doc_id in {d["_id"] for d in touched if "_id" in d}:
                if doc_id in self._store:  # the store's document: after a rollback, no longer the one changed
                    indexes.put(doc_id, self._store[doc_id])


def _iter_documents(self: Collection, query: Any) -> Iterator[Mapping[str, Any]]:
    indexes = _indexes(self._store)
    ids = _pinned_ids(query)
    candidates = set(ids) if ids is not None else indexes.plan(query)
    if candidates is None:
        found: Iterator[Mapping[str, Any]] = _collection_scan(self, query)
    else:
        if self._store.is_empty:
            filter_applies(query, {})  # a malformed query fails on an empty collection too, as with a scan
        touched = indexes.touched
        exact = indexes.exact(query) if ids is None and not touched else None
        if touched:  # an update in progress may have moved these away from their indexed values
            candidates = candidates | {d["_id"] for d in touched if "_id" in d}
        rank = indexes.rank
        store = self._store
        store._remove_expired_documents()  # what its __contains__ and __getitem__ do first, done once
        with store._rwlock.reader():  # and their lock, taken once for all the candidates
            documents = store._documents
            picked = [documents[i] for i in sorted((i for i in candidates if i in documents),
                                                   key=lambda i: rank.get(i, -1))]
        if exact is None:
            found = iter([d for d in picked if filter_applies(query, d)])
        else:  # in range by the index; checked again by a comparison (another thread may have changed it since)
            field, condition, bracket = exact
            found = iter([d for d in picked if (inside := _within(d.get(field), condition, bracket))
                          or (inside is None and filter_applies(query, d))])
    if indexes.touched is None:
        return found
    return _recording(found, indexes.touched)


_project = Collection._copy_only_fields
_copy_field = getattr(mongomock.collection, "_copy_field", None)
_KEPT = (str, int, float, bool, bytes, type(None), datetime)  # values mongomock's copy returns unchanged or equal


def _inclusion(fields: Mapping[Any, Any]) -> tuple[bool, frozenset[str]] | None:
    """(keep `_id`, the fields) when a projection is a plain inclusion of top-level fields, else None."""
    keep_id = True
    included = set()
    for name, value in fields.items():
        if type(value) not in (int, bool) or (value != 1 and not (name == "_id" and value == 0)):
            return None
        if name == "_id":
            keep_id = value == 1
        elif type(name) is not str or "." in name or name.startswith("$"):
            return None
        else:
            included.add(name)
    return (keep_id, frozenset(included)) if included else None


_INCLUSIONS: dict[tuple[Any, ...], tuple[bool, frozenset[str]] | None] = {}  # projection items -> _inclusion


def _copy_only_fields(self: Collection, doc: Mapping[str, Any], fields: Any, container: Any) -> Any:
    """What mongomock's projection makes of a document, quicker for a plain inclusion of top-level fields.

    `{"version": 1}` and the like (the matching index's catch-up reads ids and versions of the last second's
    changes, ~100 documents each time): mongomock parses the projection and builds a spec for every document;
    this reads a projection once (the services use a handful) and copies the named fields in the document's
    order, `_id` last, as mongomock does. Anything else (exclusions, dotted paths, operators, `_id` alone) goes
    to mongomock.
    """
    plan = None
    if type(fields) is dict and len(fields) <= 8:
        try:
            key = tuple(fields.items())
            plan = _INCLUSIONS.get(key, ())  # () : not read yet
            if plan == ():
                if len(_INCLUSIONS) > 1024:  # the services use a handful; bounded all the same
                    _INCLUSIONS.clear()
                plan = _INCLUSIONS[key] = _inclusion(fields)
        except TypeError:  # an operator's spec (a dict) as a value: not one
            plan = None
    if plan is None:
        return _project(self, doc, fields, container)
    keep_id, included = plan
    out = container()
    present = [name for name in included if name in doc]
    if len(present) > 1:  # in the document's order: a walk over its fields
        for name, value in doc.items():
            if name in included:
                out[name] = value if type(value) in _KEPT else _copy_field(value, container)
    elif present:  # one field (`{"version": 1}`): no walk over the others
        value = doc[present[0]]
        out[present[0]] = value if type(value) in _KEPT else _copy_field(value, container)
    if keep_id and "_id" in doc:
        out["_id"] = doc["_id"]
    return out


_patch_datetimes = getattr(mongomock.helpers, "patch_datetime_awareness_in_document", None)
_LEAVES = frozenset({str, int, float, bool, bytes, type(None)})  # values the walk returns as they are


def _quicker_walk(walk: Any, rebuilt: tuple[type, ...] = (list, tuple)) -> Any:
    """One of mongomock's walks over a whole value, quicker for plain values.

    mongomock's walks rebuild each dict and each sequence of `rebuilt` kinds as a list (its datetime walks turn
    tuples into lists; deepcopy keeps them), and call themselves for every leaf. Here plain dicts and those
    sequences are rebuilt the same way with their plain leaves copied inline; everything else (datetimes,
    ordered and other dicts, other types) goes to mongomock's walk, so the result is the same, type for type.
    Three times quicker on an idea document.
    """

    def quicker(value: Any) -> Any:
        kind = type(value)
        if kind is dict:
            return {k: v if type(v) in _LEAVES else quicker(v) for k, v in value.items()}
        if kind in rebuilt:
            return [v if type(v) in _LEAVES else quicker(v) for v in value]
        if kind in _LEAVES:
            return value
        return walk(value)

    return quicker


# Over every document stored and every query (datetimes to naive UTC milliseconds) ...
_patched_datetimes = _quicker_walk(_patch_datetimes)
# ... and over every document a query returns, for clients with tz_aware=True as the services' (made UTC-aware).
_aware_datetimes = getattr(mongomock.helpers, "make_datetime_timezone_aware_in_document", None)
_made_aware = _quicker_walk(_aware_datetimes)
# mongomock's deep copies (an update snapshots the whole document first). Stored documents share no part (the
# insert walk rebuilt them), so deepcopy's memo has nothing to keep.
_deepcopy = _quicker_walk(copy.deepcopy, (list,))


class _Copying:
    """What mongomock.collection reads of the copy module, with the quicker deepcopy."""

    copy = staticmethod(copy.copy)
    deepcopy = staticmethod(_deepcopy)


_in_op = getattr(filtering, "_in_op", None)
_in_plan: tuple[Any, Any, frozenset[Any] | None] = (None, None, None)  # the latest $in list, a copy, its set


def _quick_in(doc_val: Any, search_val: Any) -> bool:
    """mongomock's `$in`, with the list read once per query instead of once per document.

    mongomock checks every element of the `$in` list for a regex, then scans the list, for each document: the
    outbox relay's `{"_id": {"$in": <500 ids>}}` made that 500 x 500 steps a batch, half the relay's time.
    Here a list of hashable, non-regex values becomes a set, kept while the same list (same object, same
    contents) comes back for the next document; anything else is mongomock's own `$in`. Set and list find
    the same elements (equal values hash alike); an unhashable document value is looked up in the list.
    """
    global _in_plan
    if doc_val is filtering.NOTHING or type(search_val) is not list:
        return _in_op(doc_val, search_val)
    listed, copy_of, members = _in_plan
    if listed is not search_val or copy_of != search_val:
        members = None
        if not any(isinstance(x, filtering._RE_TYPES) for x in search_val):
            try:
                members = frozenset(search_val)
            except TypeError:  # an unhashable value in the list
                members = None
        _in_plan = (search_val, list(search_val), members)
    if members is None:
        return _in_op(doc_val, search_val)
    for value in doc_val if isinstance(doc_val, list | tuple) else (doc_val,):
        try:
            if value in members:
                return True
        except TypeError:  # an unhashable value in the document
            if value in search_val:
                return True
    return False


def _recording(documents: Iterator[Mapping[str, Any]], into: list[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    for document in documents:
        into.append(document)
        yield document


def _pinned_ids(query: Any) -> list[Any] | None:
    """The `_id` values a query is limited to (`{"_id": x}`, `{"_id": {"$eq": x}}`, `{"_id": {"$in": [...]}}`)."""
    if not isinstance(query, Mapping) or "_id" not in query:
        return None
    value = query["_id"]
    if isinstance(value, Mapping) and len(value) == 1:
        if "$eq" in value:
            value = value["$eq"]
        elif "$in" in value and isinstance(value["$in"], list | tuple):
            values = list(value["$in"])
            return values if all(isinstance(v, str | int) and not isinstance(v, bool) for v in values) else None
    return [value] if isinstance(value, str | int) and not isinstance(value, bool) else None


def install() -> None:
    """Patch mongomock (idempotent)."""
    if getattr(mongomock, "_twincity_indexed", False):
        return
    hooks = [(CollectionStore, name) for name in ("__setitem__", "__delitem__", "drop", "create_index")]
    hooks += [(Collection, name) for name in ("_update", "_iter_documents", "_copy_only_fields")]
    # and what _iter_documents reads of a store, once per query instead of per document
    hooks += [(CollectionStore("probe"), name) for name in ("_documents", "_rwlock", "_remove_expired_documents")]
    hooks += [(mongomock.collection, "_copy_field"), (mongomock.collection, "copy"), (filtering, "_in_op"),
              (filtering, "_filterer_inst"), (filtering, "NOTHING"), (filtering, "_RE_TYPES")]
    hooks += [(mongomock.helpers, name) for name in ("patch_datetime_awareness_in_document",
                                                     "make_datetime_timezone_aware_in_document")]
    missing = [f"{getattr(owner, '__name__', type(owner).__name__)}.{name}"
               for owner, name in hooks if not hasattr(owner, name)]
    if missing:  # another mongomock than the one these hooks were written for: scan, as mongomock does
        warnings.warn(f"mongomock {mongomock.__version__} lacks {missing}: in-memory queries scan", stacklevel=2)
        return
    CollectionStore.__setitem__ = _setitem
    CollectionStore.__delitem__ = _delitem
    CollectionStore.drop = _drop
    CollectionStore.create_index = _create_index
    Collection._update = _update
    Collection._iter_documents = _iter_documents
    Collection._copy_only_fields = _copy_only_fields
    mongomock.helpers.patch_datetime_awareness_in_document = _patched_datetimes
    mongomock.helpers.make_datetime_timezone_aware_in_document = _made_aware
    mongomock.collection.copy = _Copying
    filtering._in_op = _quick_in  # for $nin, which calls it by name
    filtering._filterer_inst._operator_map["$in"] = _quick_in
    mongomock._twincity_indexed = True
