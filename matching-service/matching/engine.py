"""The matching engine: keeps the index in step with the store, finds partners, proposes matches.

Correct when scaled out: a worker stores the idea first, then brings its index up to date from the
store, then searches. Of two workers handling two fitting ideas at the same moment, the later to sync
sees the other's idea; if both see each other, the unique pair key lets only one proposal in. A sync
reads the changes since the last one, and again those of the MATCHING_SYNC_OVERLAP seconds before it
(a write is stamped before it lands): that holds while a store write lands within that time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from matching import domain
from matching.domain import Proposal
from matching.repository import ReadModels
from matching.vectors import DIM, Encoder, Index, dequantize, quantize
from services.store import now

log = logging.getLogger(__name__)

CANDIDATES = 50  # nearest ideas by text that are scored in full
PHRASES_KEPT = 4096  # single phrases whose vectors are remembered for proposals' wording (2 KiB each)
# What a score reads (and the round, for a partnership that matches within rounds).
SCORED = ("theme", "tags", "seeks_vec", "seeks_vec_scale", "offers_vec", "offers_vec_scale", "round_id")


Hits = list[tuple[str, float]]  # (idea id, cosine), nearest first


class NotReady(Exception):
    """An event refers to something this service has not heard of yet (retried later by the bus)."""


# What most ideas of a partner city share is taken out when they are compared (Segment.search_many): this much of
# their mean. bench/matching_quality.py: the right partner first more often, the wrong ones further down.
COMMON_WEIGHT = 0.5
CITY_NAMES_SECONDS = 30.0  # how long the names taken out of texts are kept before the store is asked again


class Engine:
    """Finds the partners of ideas and people in its index and words the proposals; the use cases store them."""

    def __init__(self, repo: ReadModels, encoder: Encoder, sync_overlap: float = 1.0) -> None:
        self.repo = repo
        self.encoder = encoder
        # Each sync reads again the changes of this many seconds before the last one: a write stamped before
        # it may have become visible only after it. Its cost grows with the rate of changes times this.
        self.sync_overlap = timedelta(seconds=sync_overlap)
        self.ideas = Index()  # groups: (partnership, city)
        self._scored: dict[str, dict[str, Any]] = {}  # idea id -> its SCORED fields, for the indexed ideas
        self.interests = Index()  # groups: (city,)
        self._synced: dict[str, datetime | None] = {"ideas": None, "participants": None}
        self._indexed: dict[str, dict[str, Any]] = {"ideas": {}, "participants": {}}  # id -> version indexed
        self._sync_lock = threading.Lock()
        self._phrases: OrderedDict[str, np.ndarray] = OrderedDict()  # phrase -> vector, least recently used first
        self._phrases_lock = threading.Lock()
        self._topic: tuple[float, domain.TopicFilter] | None = None  # (read again after, the filter)

    # --- vectors -------------------------------------------------------------------------------------------

    def idea_vectors(self, idea: Mapping[str, Any]) -> dict[str, Any]:
        return self.ideas_vectors([idea])[0]

    def ideas_vectors(self, ideas: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Each idea's text vector, and the mean of its seek phrases' and of its offer phrases' vectors.

        One encoder call for the ideas' texts and the phrases not remembered yet: the encoder streams its
        weights once a call, so several ideas at once cost less each (a text's vector is the same alone or in
        company). The phrases are kept for the wording of the proposals an idea may get (complement_phrases);
        their mean stands for "what it seeks" and "what it offers" as the joined phrases did, with the same
        matching quality (bench/matching_quality.py: recall, right and wrong proposals unchanged) and a
        quarter fewer tokens to encode.
        """
        parts = [(list(idea.get("seeks") or ()), list(idea.get("offers") or ())) for idea in ideas]
        known = self._remembered([p for seeks, offers in parts for p in seeks + offers])
        missing = list(dict.fromkeys(p for seeks, offers in parts for p in seeks + offers if p not in known))
        topic = self.topic_filter()
        vectors = self.encoder.encode([*(domain.topic_text(idea, topic) for idea in ideas), *missing])
        known.update(self._remember_phrases(missing, vectors[len(ideas):]))
        found = []
        for vector, (seeks, offers) in zip(vectors[: len(ideas)], parts, strict=True):
            fields: dict[str, Any] = {}
            for name, value in (("vec", vector), ("seeks_vec", _mean([known[p] for p in seeks])),
                                ("offers_vec", _mean([known[p] for p in offers]))):
                code, scale = quantize(value)
                fields[name], fields[f"{name}_scale"] = code, scale
            # Each phrase's vector too, in the order of the phrases: the wording of a proposal made later
            # (complement_phrases) reads them from the document instead of encoding them again.
            for part, phrases in (("seeks", seeks), ("offers", offers)):
                codes = [quantize(known[p]) for p in phrases]
                fields[f"{part}_codes"], fields[f"{part}_scales"] = [c for c, _ in codes], [x for _, x in codes]
            found.append(fields)
        return found

    def topic_filter(self) -> domain.TopicFilter:
        """The names of every city this service knows (a card may name a city of another partnership too).

        Read from the store at most every CITY_NAMES_SECONDS (not once an encoded batch), and at once after this
        process handled a city's event (forget_city_names); another replica sees a new name within that time."""
        now_s = time.monotonic()
        if self._topic is None or now_s >= self._topic[0]:
            names = self.repo.city_name_forms() if self.repo is not None else []
            self._topic = (now_s + CITY_NAMES_SECONDS, domain.TopicFilter(names))
        return self._topic[1]

    def forget_city_names(self) -> None:
        self._topic = None

    def phrase_vectors(self, phrases: Sequence[str]) -> dict[str, np.ndarray]:
        """The vectors of single seek/offer phrases: remembered ones, the others encoded in one call."""
        found = self._remembered(phrases)
        missing = list(dict.fromkeys(p for p in phrases if p not in found))
        if missing:
            found.update(self._remember_phrases(missing, self.encoder.encode(missing)))
        return found

    def _remembered(self, phrases: Sequence[str]) -> dict[str, np.ndarray]:
        with self._phrases_lock:
            found = {p: self._phrases[p] for p in phrases if p in self._phrases}
            for phrase in found:
                self._phrases.move_to_end(phrase)
        return found

    def _remember_phrases(self, phrases: Sequence[str], vectors: np.ndarray) -> dict[str, np.ndarray]:
        with self._phrases_lock:
            for phrase, vector in zip(phrases, vectors, strict=True):
                self._phrases[phrase] = vector
            while len(self._phrases) > PHRASES_KEPT:
                self._phrases.popitem(last=False)
        return dict(zip(phrases, vectors, strict=True))

    def interest_vector(self, interests: str) -> dict[str, Any]:
        code, scale = quantize(self.encoder.encode([interests])[0])
        return {"vec": code, "vec_scale": scale}

    # --- keeping the index in step with the store ---------------------------------------------------------

    def sync(self) -> None:
        """Bring the in-memory index up to date with every read-model change in the store."""
        with self._sync_lock:
            self._catch_up("ideas", self.repo.ideas, self._index_idea)
            self._catch_up("participants", self.repo.participants, self._index_participant)

    def _catch_up(self, name: str, collection: Any, index: Any) -> None:
        # The overlap re-reads the last seconds' changes on every sync: only their ids and versions, then
        # the whole documents (with their vectors) of those not indexed at that version yet.
        started = now()
        indexed = self._indexed[name]
        changed = [doc["_id"] for doc in self.repo.changed_since(collection, self._since(name), {"version": 1})
                   if indexed.get(doc["_id"], -1) != doc.get("version")]
        for doc in self.repo.by_ids(collection, changed):
            index(doc)
            indexed[doc["_id"]] = doc.get("version")
        self._synced[name] = started

    def _since(self, name: str) -> datetime | None:
        last = self._synced[name]
        return None if last is None else last - self.sync_overlap

    def _index_idea(self, doc: Mapping[str, Any]) -> None:
        if doc.get("status") not in domain.MATCHABLE or not doc.get("vec") or not doc.get("vec_scale"):
            self.ideas.remove(doc["_id"])
            self._scored.pop(doc["_id"], None)
            return
        groups = [(p, doc["city"]) for p in doc.get("partnerships", [])]
        self._scored[doc["_id"]] = {k: bytes(doc[k]) if k.endswith("_vec") else doc[k]
                                    for k in SCORED if doc.get(k) is not None}
        self.ideas.put(doc["_id"], groups, bytes(doc["vec"]), doc["vec_scale"])

    def _index_participant(self, doc: Mapping[str, Any]) -> None:
        if doc.get("erased") or not doc.get("vec") or not doc.get("vec_scale"):
            self.interests.remove(doc["_id"])
            return
        self.interests.put(doc["_id"], [(doc["city"],)], bytes(doc["vec"]), doc["vec_scale"])

    # --- finding partners ---------------------------------------------------------------------------------

    def partners_of(self, idea: Mapping[str, Any]) -> list[tuple[str, str]]:
        """(partnership, partner city) pairs an idea can be matched in."""
        found = []
        for pid in idea.get("partnerships", []):
            partnership = self.repo.partnership(pid)
            if partnership is None or "cities" not in partnership:  # settings may arrive before the event
                raise NotReady(f"partnership {pid} is not known here yet")
            found += [(pid, city) for city in partnership["cities"] if city != idea["city"]]
        return found

    def nearest_many(self, ideas: Sequence[Mapping[str, Any]]) -> dict[str, dict[tuple[str, str], Hits]]:
        """The nearest ideas of each partner city of several ideas (what `candidates` starts from), searching
        each city's segment once for all of them: idea id -> (partnership, city) -> hits.

        For ideas stored and synced together (a batch): the index then holds each of them already. An idea
        whose partnership is not known yet is left out; matching it says so (NotReady), as alone.
        """
        wanted: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
        found: dict[str, dict[tuple[str, str], Hits]] = {}
        for idea in ideas:
            if idea.get("status") not in domain.MATCHABLE or not idea.get("vec"):
                continue
            try:
                groups = self.partners_of(idea)
            except NotReady:
                continue
            found[idea["_id"]] = dict.fromkeys(groups, [])  # its partner cities, in their order
            for group in groups:
                wanted.setdefault(group, []).append(idea)
        for group, members in wanted.items():
            queries = np.stack([dequantize(bytes(m["vec"]), m["vec_scale"]) for m in members])
            excludes = [[m["_id"]] for m in members]
            hits = self.ideas.search_many(group, queries, CANDIDATES, excludes, COMMON_WEIGHT)
            for idea, found_hits in zip(members, hits, strict=True):
                found[idea["_id"]][group] = found_hits
        return found

    def candidates(self, idea: Mapping[str, Any], pid: str, city: str, settings: domain.MatchPolicy,
                   hits: Hits | None = None, *, every: bool = False) -> list[dict[str, Any]]:
        """The partner city's nearest ideas that may be proposed (settings.lowest), and the two nearest in any case
        (the runner-up's score is what `domain.chosen`'s margin is over), scored, best first. Those the rules could
        propose (or all of them, `every`) come with their documents ("other") and are scored from them; the others
        by what the index keeps ("other" None).

        hits: the nearest ideas of that city, if searched already (nearest_many); else searched here.
        """
        if hits is None:
            query = dequantize(bytes(idea["vec"]), idea["vec_scale"])
            hits = self.ideas.search((pid, city), query, CANDIDATES, exclude=[idea["_id"]], common=COMMON_WEIGHT)
        # Scored first from what the index keeps of each idea (SCORED); only those that may be proposed are read
        # from the store and scored again from their documents. Reading a document (a copy, with its vectors)
        # costs more than scoring it, and with many similar ideas most of the 50 nearest could reach the
        # threshold by their text alone (may_reach) but do not in full. The two nearest are scored in any case:
        # the runner-up's score is what domain.chosen's margin is over (its document is not needed for that).
        if settings.same_round:  # a partnership that matches within rounds: only the idea's round's ideas
            hits = [(other_id, cosine) for other_id, cosine in hits
                    if (self._scored.get(other_id) or {}).get("round_id") == idea.get("round_id")]
        known = [(other_id, cosine, scored) for rank, (other_id, cosine) in enumerate(hits)
                 if (rank < 2 or may_reach(cosine, settings)) and (scored := self._scored.get(other_id)) is not None]
        quick = []
        for (other_id, cosine, other), complement in zip(
                known, complement_cosines(idea, [k for _, _, k in known]), strict=True):
            parts = domain.parts_of(cosine, idea.get("theme") == other.get("theme"), idea.get("tags", []),
                                    other.get("tags", []), float(complement) if complements(idea, other) else None)
            quick.append({"other": None, "id": other_id, "cosine": cosine, "score": parts.score(settings)})
        quick.sort(key=lambda c: -c["score"])
        wanted = {c["id"] for c in (quick if every else domain.chosen(quick, settings))}
        docs = self.repo.ideas_by_id(list(wanted)) if wanted else {}
        scored = []
        for entry in quick:
            other_id, cosine = entry["id"], entry["cosine"]
            other = docs.get(other_id)
            if other is None:
                if other_id not in wanted:  # not one the rules could propose: its score alone, for the margin
                    scored.append(entry)
                continue
            if other.get("status") not in domain.MATCHABLE or other["city"] == idea["city"]:
                continue
            parts, score, complement = score_of(idea, other, cosine, settings)
            scored.append({"other": other, "id": other_id, "cosine": cosine, "parts": parts, "score": score,
                           "complement": complement})
        scored.sort(key=lambda c: -c["score"])
        return scored

    def proposals_for_idea(self, idea: Mapping[str, Any], *, synced: bool = False,
                           nearest: Mapping[tuple[str, str], Hits] | None = None) -> list[Proposal]:
        """The best partners of an idea (ideas and interested people), as proposals to make.

        synced: the index was brought up to date after this idea was stored (see the module's docstring).
        nearest: its nearest ideas per partner city, searched after that (nearest_many); its keys are the
        partner cities, read once there.
        """
        if idea.get("status") not in domain.MATCHABLE:
            return []
        if not synced:
            self.sync()
        found = []
        for pid, city in (self.partners_of(idea) if nearest is None else nearest):
            settings = self.repo.settings(pid)
            hits = nearest[(pid, city)] if nearest is not None else None
            candidates = self.candidates(idea, pid, city, settings, hits)
            for candidate in domain.chosen(candidates, settings):
                if candidate["other"] is not None:  # (its score moved above one read from its document)
                    found.append(Proposal(self._idea_match(idea, candidate, pid), settings))
            found += self._interested_in(idea, pid, city, settings)
        return found

    def proposals_in(self, ideas: Sequence[Mapping[str, Any]], pid: str) -> list[Proposal]:
        """What the rules propose now to each of several ideas in one partnership (two ideas each; a re-run)."""
        settings = self.repo.settings(pid)
        nearest = self.nearest_many(ideas)
        found = []
        for idea in ideas:
            for (p, city), hits in nearest.get(idea["_id"], {}).items():
                if p == pid:
                    for candidate in domain.chosen(self.candidates(idea, p, city, settings, hits), settings):
                        if candidate["other"] is not None:
                            found.append(Proposal(self._idea_match(idea, candidate, p), settings))
        return found

    def ranking(self, idea: Mapping[str, Any], pid: str, city: str,
                settings: domain.MatchPolicy) -> list[dict[str, Any]]:
        """Every near candidate of a partner city, best first, with its reasons and whether the partnership's rules
        propose it (what a coordinator looks at in the workshop: the near misses too)."""
        candidates = self.candidates(idea, pid, city, replace(settings, threshold=0.0, floor=0.0), every=True)
        proposed = {c["other"]["_id"] for c in domain.chosen(candidates, settings)}
        return [{**self._idea_match(idea, c, pid), "proposed": c["other"]["_id"] in proposed} for c in candidates]

    def pairing(self, a: Mapping[str, Any], b: Mapping[str, Any], pid: str, note: str) -> Proposal:
        """Two ideas a coordinator paired: scored and worded as any pair, the coordinator's note first."""
        settings = self.repo.settings(pid)
        cosine = self.cosine(a, b, pid)
        parts, score, complement = score_of(a, b, cosine, settings)
        fields = self._idea_match(a, {"other": b, "cosine": cosine, "parts": parts, "score": score,
                                      "complement": complement}, pid)
        fields.update(kind="coordinator", reasons=[domain.coordinator_reason(note), *fields["reasons"]])
        return Proposal(fields, settings)

    def cosine(self, a: Mapping[str, Any], b: Mapping[str, Any], pid: str) -> float:
        """The two ideas' similarity as a search from `a` would see it (what b's city shares taken out)."""
        self.sync()
        query = dequantize(bytes(a["vec"]), a["vec_scale"])
        found = self.ideas.similarity((pid, b["city"]), query, b["_id"], common=COMMON_WEIGHT)
        if found is not None:
            return found
        return float(query @ dequantize(bytes(b["vec"]), b["vec_scale"]))  # not indexed (yet): as written

    def proposals_for_person(self, person: Mapping[str, Any]) -> list[Proposal]:
        """The partner cities' ideas that fit a participant's interests, as proposals to make."""
        if person.get("erased") or not person.get("vec") or not person.get("vec_scale"):
            return []
        self.sync()
        query = dequantize(bytes(person["vec"]), person["vec_scale"])
        found = []
        for partnership in self.repo.partnerships.find({"cities": person["city"]}):
            settings = domain.MatchPolicy.from_doc(partnership.get("settings"))
            for city in partnership["cities"]:
                if city == person["city"]:
                    continue
                hits = self.ideas.search((partnership["_id"], city), query, settings.top_k)
                docs = self.repo.ideas_by_id([h for h, _ in hits])
                for idea_id, cosine in hits:
                    idea = docs.get(idea_id)
                    if idea is not None and domain.similarity_part(cosine) >= settings.interest_threshold:
                        found.append(Proposal(self._interest_match(person, idea, cosine, partnership["_id"]),
                                              settings))
        return found

    def _interested_in(self, idea: Mapping[str, Any], pid: str, city: str,
                       settings: domain.MatchPolicy) -> list[Proposal]:
        query = dequantize(bytes(idea["vec"]), idea["vec_scale"])
        found = []
        for person_id, cosine in self.interests.search((city,), query, settings.top_k):
            if domain.similarity_part(cosine) < settings.interest_threshold:
                continue
            person = self.repo.participant(person_id)
            if person and not person.get("erased"):
                found.append(Proposal(self._interest_match(person, idea, cosine, pid), settings))
        return found

    # --- proposals -------------------------------------------------------------------------------------------

    def _idea_match(self, idea: Mapping[str, Any], candidate: Mapping[str, Any], pid: str) -> dict[str, Any]:
        other, parts = candidate["other"], candidate["parts"]
        shared = sorted({t.lower() for t in idea.get("tags", [])} & {t.lower() for t in other.get("tags", [])})
        complement = self.complement_phrases(idea, other) if parts.complement else None
        reasons = domain.reasons(
            parts=parts,
            theme_labels=self.repo.theme_labels(pid, idea["theme"]) or {"en": idea["theme"]},
            shared_tags=shared,
            titles=(idea["title"], other["title"]),
            complement=complement,
            cosine=candidate["cosine"],
        )
        return {
            "pair": domain.pair_key("idea", idea["_id"], other["_id"]),
            "kind": "idea",
            "partnership": pid,
            "score": candidate["score"],
            "parts": parts.as_dict(),
            "reasons": reasons,
            "sides": [_idea_side(idea), _idea_side(other)],
        }

    def _interest_match(self, person: Mapping[str, Any], idea: Mapping[str, Any], cosine: float,
                        pid: str) -> dict[str, Any]:
        part = domain.similarity_part(cosine)
        return {
            "pair": domain.pair_key("interest", person["_id"], idea["_id"]),
            "kind": "interest",
            "partnership": pid,
            "score": round(part, 4),
            "parts": {"semantic": round(part, 4)},
            "reasons": [domain.interest_reason(person.get("interests", ""), idea["title"], cosine)],
            "sides": [{"city": person["city"], "participant_id": person["_id"], "idea_id": None, "author_id": None,
                       "title": None, "language": person.get("language")}, _idea_side(idea)],
        }

    def complement_phrases(self, a: Mapping[str, Any], b: Mapping[str, Any]) -> domain.Complement | None:
        """Which offer answers which need, phrase by phrase (only for the few proposals made)."""
        best: domain.Complement | None = None
        phrases = {(side, part): list(idea.get(part) or ()) for side, idea in (("a", a), ("b", b))
                   for part in ("seeks", "offers")}
        if not any(phrases.values()):
            return None
        vectors = {}
        for (side, part), found in phrases.items():
            idea = a if side == "a" else b
            codes, scales = idea.get(f"{part}_codes"), idea.get(f"{part}_scales")
            if codes is not None and scales is not None and len(codes) == len(found) == len(scales):
                vectors[(side, part)] = np.array([dequantize(bytes(c), x) for c, x in zip(codes, scales, strict=True)],
                                                 dtype=np.float32).reshape(len(found), DIM)
            else:  # stored before the phrases' vectors were: encoded (or remembered) now
                known = self.phrase_vectors(found)
                vectors[(side, part)] = np.array([known[p] for p in found], dtype=np.float32).reshape(len(found), DIM)
        for (seeker, offerer), (s, o) in zip(((a, b), (b, a)), (("a", "b"), ("b", "a")), strict=True):
            seeks, offers = phrases[(s, "seeks")], phrases[(o, "offers")]
            if not seeks or not offers:
                continue
            sims = vectors[(s, "seeks")] @ vectors[(o, "offers")].T
            i, j = np.unravel_index(int(np.argmax(sims)), sims.shape)
            if best is None or sims[i, j] > best.cosine:
                best = domain.Complement(offer_city=self.repo.city_names(offerer["city"]),
                                         seek_city=self.repo.city_names(seeker["city"]),
                                         offer=offers[j], seek=seeks[i], cosine=float(sims[i, j]))
        return best


def may_reach(cosine: float, settings: domain.MatchPolicy) -> bool:
    """Whether an idea this similar by text could score at least the threshold: its score with theme, tags and
    complement all full. False only when even that is below the threshold (with a margin for the score's
    rounding), so skipping those ideas proposes exactly what scoring them all would."""
    weights = (settings.semantic, settings.theme, settings.tags, settings.complement)
    total = sum(weights)
    if total <= 0 or min(weights) < 0:
        return True  # scores that are not a weighted mean of parts in 0..1: no bound, score them all
    # With every part full: a part the cards lack only shifts weight onto those they have, so this is the most.
    best = (settings.semantic * domain.similarity_part(cosine) + settings.theme + settings.tags
            + settings.complement) / total
    return best >= settings.lowest - 1e-3


def _mean(vectors: Sequence[np.ndarray]) -> np.ndarray:
    """The unit vector along the sum of unit vectors (zero when there are none)."""
    if not vectors:
        return np.zeros(DIM, dtype=np.float32)
    total = np.sum(vectors, axis=0, dtype=np.float32)
    norm = float(np.linalg.norm(total))
    return total / norm if norm else total


def score_of(idea: Mapping[str, Any], other: Mapping[str, Any], cosine: float,
             settings: domain.MatchPolicy) -> tuple[domain.Parts, float, float]:
    """The parts, the score and the complement cosine of a pair whose texts have this cosine."""
    complement = best_complement_cosine(idea, other)
    parts = domain.parts_of(cosine, idea.get("theme") == other.get("theme"), idea.get("tags", []),
                            other.get("tags", []), complement if complements(idea, other) else None)
    return parts, parts.score(settings), complement


def complements(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether one side seeks and the other offers (either way round): else complementarity is no part."""
    return bool((a.get("seeks_vec_scale") and b.get("offers_vec_scale"))
                or (a.get("offers_vec_scale") and b.get("seeks_vec_scale")))


def complement_cosines(idea: Mapping[str, Any], others: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """best_complement_cosine of an idea with each of several others, in two matrix products."""
    best = np.zeros(len(others), dtype=np.float32)
    for mine, theirs in (("seeks", "offers"), ("offers", "seeks")):
        if not idea.get(f"{mine}_vec_scale"):
            continue
        rows = [i for i, other in enumerate(others) if other.get(f"{theirs}_vec_scale")]
        if not rows:
            continue
        vector = dequantize(bytes(idea[f"{mine}_vec"]), idea[f"{mine}_vec_scale"])
        codes = np.frombuffer(b"".join(bytes(others[i][f"{theirs}_vec"]) for i in rows), dtype=np.int8)
        scales = np.array([others[i][f"{theirs}_vec_scale"] for i in rows], dtype=np.float32)
        cosines = (codes.reshape(len(rows), DIM).astype(np.float32) @ vector) * scales
        best[rows] = np.maximum(best[rows], cosines)
    return best


def best_complement_cosine(a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
    """How well one side's needs meet the other's offers (either way round), from the stored vectors."""
    return float(complement_cosines(a, [b])[0])


def _idea_side(idea: Mapping[str, Any]) -> dict[str, Any]:
    return {"city": idea["city"], "idea_id": idea["_id"], "participant_id": None,
            "author_id": idea.get("author_id"), "title": idea["title"], "language": idea.get("language")}


__all__: Sequence[str] = ("Engine", "NotReady")
