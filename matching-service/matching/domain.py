"""The rules of matching: the score and its parts, the reasons people read, and the lives of a match and a project.

`Match` and `Project` decide and record their events (services.aggregate); repository.py stores them. No I/O."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.aggregate import Aggregate
from services.store import NotFound, new_id

PROPOSED, ACCEPTED, CONFIRMED, DECLINED, EXPIRED = "proposed", "accepted", "confirmed", "declined", "expired"
WITHDRAWN = "withdrawn"  # an open proposal closed by a coordinator (or by a re-run of matching)
OPEN_STATUSES = (PROPOSED, ACCEPTED)  # still waiting for answers
MATCHABLE = ("open", "matched")  # idea statuses that can get new proposals
IN_PROJECT = "in_project"  # a coordinator may still pair such an idea: its partner then joins the project


@dataclass(frozen=True)
class MatchPolicy:
    """How one partnership matches: weights of the score's parts, when a pair is proposed, proposals per idea,
    expiry.

    A pair is proposed when its score reaches `threshold` (up to `top_k` an idea), or when the partner is the idea's
    best, its score reaches `floor` and leads the idea's next candidate by `margin` (`chosen`): two
    workshop cards of a title and a sentence rarely score as high as two long descriptions with tags, but their
    ranking is as good (bench/matching_quality.py).
    """

    # Defaults from bench/matching_quality.py on the labelled sets: text similarity carries the match;
    # theme, tags and complementarity refine it (more weight on them pushed right partners down).
    semantic: float = 0.80
    theme: float = 0.05
    tags: float = 0.05
    complement: float = 0.10
    threshold: float = 0.65
    top_k: int = 3
    expiry_days: float = 21.0
    interest_threshold: float = 0.40
    floor: float = 0.40
    margin: float = 0.10
    same_round: bool = False  # only ideas of one round are paired (a partnership whose lab runs in rounds)

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any] | None) -> MatchPolicy:
        known = {f: doc[f] for f in cls.__dataclass_fields__ if doc and f in doc}
        return cls(**known)

    def as_doc(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def lowest(self) -> float:
        """The lowest score that may be proposed at all."""
        return min(self.threshold, self.floor)


# Cosine similarity of two multilingual sentence vectors: about 0.1 for unrelated texts, 0.3 to 0.6 for
# texts about the same plan, across languages. Mapped onto 0..1 so that the weights mean what they say.
SIMILARITY_FLOOR, SIMILARITY_CEILING = 0.10, 0.60


def similarity_part(cosine: float) -> float:
    return min(1.0, max(0.0, (cosine - SIMILARITY_FLOOR) / (SIMILARITY_CEILING - SIMILARITY_FLOOR)))


@dataclass(frozen=True)
class Proposal:
    """A pair the engine found and worded: pair, kind, partnership, score, parts, reasons, sides (`fields`), and
    the policy of its partnership (how long it stays open)."""

    fields: Mapping[str, Any]
    policy: MatchPolicy


@dataclass(frozen=True)
class Parts:
    """The score's parts, each 0..1, before weighting. A part neither card can speak to is None (two workshop cards
    without tags have no tag overlap to show): it does not count, and its weight goes to the parts both have."""

    semantic: float
    theme: float
    tags: float | None = None
    complement: float | None = None

    def score(self, s: MatchPolicy) -> float:
        weighted = [(s.semantic, self.semantic), (s.theme, self.theme), (s.tags, self.tags),
                    (s.complement, self.complement)]
        total = sum(w for w, part in weighted if part is not None)
        if total <= 0:
            return 0.0
        return round(sum(w * part for w, part in weighted if part is not None) / total, 4)

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in asdict(self).items() if v is not None}


def tag_overlap(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Jaccard overlap of two tag sets; None when either has none (nothing to compare)."""
    sa, sb = {t.lower() for t in a}, {t.lower() for t in b}
    if not sa or not sb:
        return None
    return len(sa & sb) / len(sa | sb)


def parts_of(cosine: float, same_theme: bool, tags_a: Sequence[str], tags_b: Sequence[str],
             complement_cosine: float | None) -> Parts:
    """complement_cosine: None when neither side seeks what the other could offer (one has no seeks, the other no
    offers, both ways round)."""
    return Parts(
        semantic=similarity_part(cosine),
        theme=1.0 if same_theme else 0.0,
        tags=tag_overlap(tags_a, tags_b),
        complement=None if complement_cosine is None else similarity_part(complement_cosine),
    )


def chosen(candidates: Sequence[Mapping[str, Any]], policy: MatchPolicy) -> list[Mapping[str, Any]]:
    """Which of an idea's candidates (each with its "score", best first) are proposed.

    Those that reach the threshold, up to top_k; else the best alone when its score reaches the floor and leads
    the next candidate by the margin. Rank carries what an absolute cut throws away on short texts (two cards
    about the same plan score 0.45 where two long descriptions with tags score 0.9); the floor and the margin keep
    an idea without a real partner quiet (nothing stands out among its candidates).
    """
    clear = [c for c in candidates[: policy.top_k] if c["score"] >= policy.threshold]
    if clear or not candidates:
        return clear
    best = candidates[0]
    runner_up = candidates[1]["score"] if len(candidates) > 1 else 0.0
    if best["score"] >= policy.floor and best["score"] - runner_up >= policy.margin:
        return [best]
    return []


# --- what a text says about its topic --------------------------------------------------------------------------

# Words about the partnership itself that most ideas carry in some form ("gemeinsam", "beider Städte", "двух
# городов"): they say nothing about the topic, and two cards sharing them are no closer in plan. With the city
# names (`TopicFilter`) they are taken out of the text before it is encoded.
TOPIC_FREE = (
    r"gemeinsam\w*", r"beide[nrs]?\s+St[aä]dte\w*", r"Partnerst[aä]dt\w*", r"St[aä]dtepartnerschaft\w*",
    r"zusammen",
    r"(?:двух|обоих|наших)\s+город\w*", r"город\w*-побратим\w*", r"побратим\w*", r"совместн\w*", r"вместе",
    r"(?:nos\s+)?deux\s+villes", r"villes?\s+jumel\w*", r"jumel\w*", r"ensemble",
    r"both\s+(?:cities|towns)", r"twin\s+(?:towns?|cit(?:y|ies))", r"partner\s+(?:towns?|cit(?:y|ies))",
    r"together", r"twinning",
)


class TopicFilter:
    """Takes out of an idea's text what says nothing about its topic: the names of the cities (in every form the
    service knows, with their endings: Karlsruher, Краснодаре) and TOPIC_FREE words. Two cards naming both cities
    scored higher against each other than against their real partners (issue 19)."""

    def __init__(self, city_names: Iterable[str]) -> None:
        stems = sorted({_stem(n) for n in city_names if len(n.strip()) >= 3}, key=len, reverse=True)
        words = [re.escape(s) + r"\w*" for s in stems] + list(TOPIC_FREE)
        self._pattern = re.compile(r"(?<!\w)(?:" + "|".join(words) + r")(?!\w)", re.IGNORECASE)

    def __call__(self, text: str) -> str:
        cleaned = self._pattern.sub(" ", text)
        cleaned = re.sub(r"\s+([.,;:!?])", r"\1", re.sub(r"[ \t]+", " ", cleaned))
        return cleaned.strip(" -–—,;:")


def _stem(name: str) -> str:
    """A name without its last letter when it is long enough to have endings (Krasnodar -> Krasnoda[r|re|ra])."""
    name = name.strip()
    return name[:-1] if len(name) >= 6 else name


def topic_text(idea: Mapping[str, Any], topic: Callable[[str], str]) -> str:
    """What is encoded of an idea: title, description and tags, without the words that say nothing of its topic."""
    tags = " ".join(idea.get("tags") or ())
    return topic(f"{idea['title']}. {idea.get('description', '')} {tags}".strip())


def without_repeats(proposals: Sequence[Proposal],
                    authors_matched_with: Callable[[str], set[str]]) -> list[Proposal]:
    """The proposals less those that tell a person nothing new: an idea proposed to someone for their interests
    while their own idea is proposed with it (in this batch) or was matched with it before (`authors_matched_with`:
    the authors of the ideas an idea has idea matches with). One card per pair on a person's page, not two."""
    paired: dict[str, set[str]] = {}  # idea -> authors of the ideas proposed with it in this batch
    for proposal in proposals:
        if proposal.fields["kind"] != "interest":
            sides = proposal.fields["sides"]
            for side in sides:
                paired.setdefault(side["idea_id"], set()).update(
                    other.get("author_id") for other in sides if other is not side)
    kept = []
    for proposal in proposals:
        if proposal.fields["kind"] == "interest":
            person, idea = proposal.fields["sides"][0]["participant_id"], proposal.fields["sides"][1]["idea_id"]
            if person in paired.get(idea, set()) or person in authors_matched_with(idea):
                continue
        kept.append(proposal)
    return kept


def pair_key(kind: str, a: str, b: str) -> str:
    """One string per unordered pair: the unique key that stops a pair from being proposed twice."""
    first, second = sorted((a, b)) if kind == "idea" else (a, b)
    return f"{kind}:{first}|{second}"


# --- reasons ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Complement:
    offer_city: Mapping[str, str]  # the city's name in each language of the reasons (de, ru, en)
    seek_city: Mapping[str, str]
    offer: str
    seek: str
    cosine: float


def _q(text: str, lang: str) -> str:
    return {"de": f"„{text}“", "ru": f"«{text}»"}.get(lang, f"“{text}”")


def reasons(
    *,
    parts: Parts,
    theme_labels: Mapping[str, str] | None,
    shared_tags: Sequence[str],
    titles: tuple[str, str],
    complement: Complement | None,
    cosine: float,
) -> list[dict[str, Any]]:
    """Why two ideas fit, as sentences in de/ru/en; strongest first."""
    found: list[tuple[float, dict[str, Any]]] = []
    if parts.semantic > 0:
        a, b = titles
        found.append((parts.semantic, {
            "code": "similar_plans", "params": {"similarity": round(cosine, 3), "titles": [a, b]},
            "text": {"de": f"Ähnliches Vorhaben: {_q(a, 'de')} und {_q(b, 'de')}",
                     "ru": f"Похожие замыслы: {_q(a, 'ru')} и {_q(b, 'ru')}",
                     "en": f"Similar plans: {_q(a, 'en')} and {_q(b, 'en')}"},
        }))
    if parts.theme and theme_labels:
        found.append((0.5, {
            "code": "same_theme", "params": {"labels": dict(theme_labels)},
            "text": {"de": f"Gleiches Thema: {theme_labels.get('de') or theme_labels.get('en')}",
                     "ru": f"Общая тема: {theme_labels.get('ru') or theme_labels.get('en')}",
                     "en": f"Same theme: {theme_labels.get('en') or theme_labels.get('de')}"},
        }))
    if shared_tags:
        tags = ", ".join(shared_tags)
        found.append((parts.tags or 0.0, {
            "code": "shared_tags", "params": {"tags": list(shared_tags)},
            "text": {"de": f"Gemeinsame Schlagwörter: {tags}", "ru": f"Общие ключевые слова: {tags}",
                     "en": f"Shared tags: {tags}"},
        }))
    if complement is not None and parts.complement:
        c = complement
        found.append((parts.complement + 0.1, {
            "code": "offers_what_is_sought",
            "params": {"offer_city": c.offer_city["en"], "seek_city": c.seek_city["en"], "offer": c.offer,
                       "seek": c.seek},
            "text": {"de": f"{c.offer_city['de']} bietet, was {c.seek_city['de']} sucht: {_q(c.offer, 'de')} "
                           f"für {_q(c.seek, 'de')}",
                     "ru": f"{c.offer_city['ru']} предлагает то, что ищет {c.seek_city['ru']}: {_q(c.offer, 'ru')} "
                           f"для {_q(c.seek, 'ru')}",
                     "en": f"{c.offer_city['en']} offers what {c.seek_city['en']} seeks: {_q(c.offer, 'en')} "
                           f"for {_q(c.seek, 'en')}"},
        }))
    return [reason for _, reason in sorted(found, key=lambda item: -item[0])]


def coordinator_reason(note: str) -> dict[str, Any]:
    """Why a coordinator paired two ideas, in their words (first among the reasons)."""
    return {"code": "coordinator_note", "params": {"note": note},
            "text": {"de": f"Vorschlag der Koordination: {note}" if note else "Vorschlag der Koordination",
                     "ru": f"Предложение координаторов: {note}" if note else "Предложение координаторов",
                     "en": f"Proposed by the coordinators: {note}" if note else "Proposed by the coordinators"}}


def check_pairing(a: Mapping[str, Any], b: Mapping[str, Any], partnership: Mapping[str, Any] | None) -> None:
    """Two ideas a coordinator pairs: of the two cities of one partnership, both still open to partners."""
    if a["_id"] == b["_id"] or a["city"] == b["city"]:
        raise Unpaired("ideas", "two ideas of two partner cities are paired, not two of one city")
    if partnership is None:
        raise Unpaired("ideas", "the two ideas are not of one partnership")
    for idea in (a, b):
        if idea.get("status") not in (*MATCHABLE, IN_PROJECT):
            raise Unpaired("ideas", f"idea {idea['_id']} is {idea.get('status', 'unknown')}: only open ideas and "
                                    "ideas in a project are paired")
    if a.get("status") == b.get("status") == IN_PROJECT:
        raise Unpaired("ideas", "both ideas are in projects already: an idea joins a project through its partner "
                                "idea, two projects do not merge")


class Unpaired(ValueError):
    """Two ideas that cannot be paired (the field, and why)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def interest_reason(interests: str, title: str, cosine: float) -> dict[str, Any]:
    excerpt = interests if len(interests) <= 80 else interests[:77].rstrip() + "…"
    return {
        "code": "fits_interests", "params": {"similarity": round(cosine, 3), "title": title},
        "text": {"de": f"{_q(title, 'de')} passt zu den Interessen: {excerpt}",
                 "ru": f"{_q(title, 'ru')} соответствует интересам: {excerpt}",
                 "en": f"{_q(title, 'en')} fits the interests: {excerpt}"},
    }


# --- the life of a match ---------------------------------------------------------------------------------

class RuleViolation(Exception):
    """The match cannot do that now (rendered as 409)."""


class NotASide(RuleViolation):
    """The city is not one of the match's sides: it may not answer it (rendered as 403)."""


@dataclass
class Answer:
    status: str
    events: list[str] = field(default_factory=list)


def answer(match: Mapping[str, Any], city: str, accept: bool) -> Answer:
    """The match after `city` accepted or declined; which events that causes."""
    status = match["status"]
    sides = match["sides"]
    mine = [s for s in sides if s["city"] == city]
    if not mine:
        raise NotASide(f"{city} is not a side of this match")
    if status not in OPEN_STATUSES:
        raise RuleViolation(f"this match is {status}; it can no longer be answered")
    if not accept:
        return Answer(DECLINED, ["match.declined"])
    if mine[0].get("answer") == "accepted":
        raise RuleViolation(f"{city} accepted this match already")
    others_accepted = all(s.get("answer") == "accepted" for s in sides if s["city"] != city)
    if others_accepted:
        return Answer(CONFIRMED, ["match.accepted", "match.confirmed"])
    return Answer(ACCEPTED, ["match.accepted"])


def is_a_side(match: Mapping[str, Any], person: str) -> bool:
    """The person wrote one of the match's ideas, or is the participant whose interests it matched."""
    return any(person in (s.get("author_id"), s.get("participant_id")) for s in match.get("sides", []))


def is_member(project: Mapping[str, Any], person: str) -> bool:
    """A member of the project, or one of the people whose match formed it."""
    return any(m.get("participant_id") == person for m in project.get("members", [])) or is_a_side(project, person)


def side_payload(side: Mapping[str, Any]) -> dict[str, Any]:
    """What an event tells of a side: whose idea (or interests), in which city and language."""
    return {k: side.get(k) for k in ("city", "idea_id", "participant_id", "author_id", "title", "language")}


class Match(Aggregate):
    """A proposal that two ideas (or a person's interests and an idea) of partner cities belong together."""

    @classmethod
    def propose(cls, proposal: Proposal, *, at: datetime) -> Match:
        """A new proposal, open until its partnership's expiry from `at`."""
        match = cls({"_id": new_id("match"), **proposal.fields, "status": PROPOSED, "version": 1, "created_at": at,
                     "expires_at": expires_at(at, proposal.policy)})
        match._proposed()
        return match

    def reopen(self, proposal: Proposal, *, at: datetime) -> None:
        """A withdrawn proposal proposed again (the rules make it again, or a coordinator pairs the two): open as a
        new proposal, nobody's answer carried over. A declined or expired match stays closed."""
        if self.doc["status"] != WITHDRAWN:
            raise RuleViolation(f"match {self.id} is {self.doc['status']}: only a withdrawn proposal is reopened")
        self.set(**{k: v for k, v in proposal.fields.items() if k != "pair"}, status=PROPOSED,
                 expires_at=expires_at(at, proposal.policy), reopened_at=at)
        self.remove("closed_reason")
        self.next_version(at)
        self._proposed()

    def _proposed(self) -> None:
        doc = self.doc
        payload = {k: doc[k] for k in ("partnership", "kind", "score", "parts", "reasons", "version")}
        payload.update(match_id=self.id, sides=[side_payload(s) for s in doc["sides"]],
                       expires_at=doc["expires_at"].isoformat())
        self.record("match.proposed", payload, partnership=doc["partnership"])

    def answer(self, city: str, accept: bool, *, participant_id: str | None, at: datetime) -> None:
        """`city` accepts or declines (in the name of `participant_id`); the second yes confirms."""
        result = answer(self.doc, city, accept)
        sides = [{**s, "answer": "accepted" if accept else "declined"} if s["city"] == city else s
                 for s in self.doc["sides"]]
        self._move(result.status, result.events, at, sides=sides, city=city, participant_id=participant_id)

    def close(self, reason: str, *, city: str, at: datetime) -> None:
        """Closed without an answer (its idea was withdrawn): declined, with the reason."""
        self._move(DECLINED, ["match.declined"], at, closed_reason=reason, city=city, reason=reason)

    def expire(self, *, at: datetime) -> None:
        self._move(EXPIRED, ["match.expired"], at)

    def withdraw(self, reason: str, *, city: str | None, at: datetime) -> None:
        """Close an open proposal: a coordinator of `city` saw it was a poor one, or (None) it no longer qualifies."""
        if self.doc["status"] not in OPEN_STATUSES:
            raise RuleViolation(f"match {self.id} is {self.doc['status']}: only an open proposal is withdrawn")
        self._move(WITHDRAWN, ["match.withdrawn"], at, closed_reason=reason, city=city, reason=reason)

    def _move(self, status: str, event_types: Sequence[str], at: datetime, *, city: str | None = None,
              participant_id: str | None = None, reason: str | None = None, **fields: Any) -> None:
        self.set(status=status, **fields)
        self.next_version(at)
        sides = [side_payload(s) for s in self.doc["sides"]]
        for event_type in event_types:
            payload: dict[str, Any] = {"match_id": self.id, "partnership": self.doc["partnership"], "status": status,
                                       "sides": sides, "version": self.version}
            if event_type in ("match.accepted", "match.declined"):
                payload.update(city=city or sides[0]["city"], participant_id=participant_id)
                if reason:
                    payload["reason"] = reason
            elif event_type == "match.withdrawn":
                payload.update(city=city, reason=reason or "")
            self.record(event_type, payload, partnership=self.doc["partnership"], city=city)


# --- joint projects ------------------------------------------------------------------------------------------

FORMING, ACTIVE, PAUSED, DONE = "forming", "active", "paused", "done"
PROJECT_STATUSES = (FORMING, ACTIVE, PAUSED, DONE)
AUTHOR, INTERESTED, JOINED = "author", "interested", "joined"  # how a member came in (the member's `role`)
PLAN_FIELDS = ("title", "status", "summary", "next_steps")
MAX_SLOTS, MAX_OPEN_MEETINGS, MAX_PENDING_REQUESTS = 10, 20, 50
MAX_AHEAD = timedelta(days=730)  # a meeting is offered at most two years ahead


def members_of(match: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The people a confirmed match brings into a project: the authors of its ideas, the person whose interests it
    matched."""
    members: list[dict[str, Any]] = []
    for side in match["sides"]:
        for person, role in ((side.get("author_id"), AUTHOR), (side.get("participant_id"), INTERESTED)):
            if person and person not in [m["participant_id"] for m in members]:
                members.append({"participant_id": person, "city": side["city"], "role": role})
    return members


def parse_slot(raw: str, zone: str) -> datetime:
    """An RFC 3339 time (with its offset), or a local time read in `zone` (an IANA name), in UTC. ValueError says
    what is wrong: not a time, or a local time the clocks skip (02:30 on the night summer time starts)."""
    try:
        moment = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise ValueError(f"{raw!r} is not a date and time (RFC 3339, e.g. 2026-12-10T18:00:00+01:00)") from None
    if moment.tzinfo is None:
        local = moment.replace(tzinfo=zone_info(zone))
        if local.astimezone(UTC).astimezone(local.tzinfo).replace(tzinfo=None) != moment:
            raise ValueError(f"{raw} does not exist in {zone}: the clocks skip it (summer time begins)")
        moment = local
    try:
        return moment.astimezone(UTC).replace(microsecond=0)
    except OverflowError:
        raise ValueError(f"{raw!r} is too far off") from None


def zone_info(zone: str) -> ZoneInfo:
    if zone != "UTC" and "/" not in zone:  # not a place's zone ("localtime", "Factory", "posixrules")
        raise ValueError(f"unknown time zone {zone!r}: an IANA name such as Europe/Berlin or Europe/Moscow")
    try:
        return ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {zone!r}: an IANA name such as Europe/Berlin or Europe/Moscow") from None


class Project(Aggregate):
    """What a confirmed match becomes: its ideas, its members, its plan, its meetings and who asked to join.

    One project per idea: a second confirmed match of an idea brings its partner into the idea's project
    (`take_match`). The project's events name its members and cities after the change (for notify and webhooks).
    """

    @classmethod
    def form(cls, match: Mapping[str, Any], titles: Mapping[str, str], cities: Sequence[str], *, cause: str,
             at: datetime, project_id: str | None = None) -> Project:
        """The project of a confirmed match (`titles`: the titles of its ideas, as this service knows them)."""
        members = [{**m, "joined_at": at} for m in members_of(match)]
        idea_ids = [s["idea_id"] for s in match["sides"] if s.get("idea_id")]
        title = " + ".join(titles[i] for i in idea_ids if i in titles)[:300] or "…"
        project = cls({"_id": project_id or new_id("project"), "match_id": match["_id"], "match_ids": [match["_id"]],
                       "partnership": match["partnership"], "cities": list(cities), "title": title,
                       "status": FORMING, "summary": "", "next_steps": [], "idea_ids": idea_ids, "members": members,
                       "sides": match["sides"], "meetings": [], "join_requests": [], "created_at": at,
                       "updated_at": at, "cause": cause, "version": 1})
        project.record("project.formed", {**project._core(), "match_id": match["_id"], "idea_ids": idea_ids},
                       partnership=match["partnership"])
        return project

    # what every event of a project says
    def _core(self) -> dict[str, Any]:
        d = self.doc
        return {"project_id": self.id, "partnership": d["partnership"], "title": d.get("title", ""),
                "members": [{k: m.get(k) for k in ("participant_id", "city", "role")} for m in d.get("members", [])],
                "cities": self.cities, "version": max(1, self.version)}

    def _record(self, event_type: str, **payload: Any) -> None:
        self.record(event_type, {**self._core(), **payload}, partnership=self.doc["partnership"],
                    city=payload.get("city"))

    @property
    def cities(self) -> list[str]:
        d = self.doc
        return list(d.get("cities") or dict.fromkeys(s["city"] for s in d.get("sides", [])))

    @property
    def status(self) -> str:
        return self.doc.get("status") or FORMING

    def member(self, person: str | None) -> dict[str, Any] | None:
        return next((m for m in self.doc.get("members", []) if person and m["participant_id"] == person), None)

    def take_match(self, match: Mapping[str, Any], *, at: datetime) -> bool:
        """A further confirmed match of one of its ideas: its other idea and people join. False when it had
        (a redelivered confirmation)."""
        if match["_id"] in self.doc.get("match_ids", [self.doc.get("match_id")]):
            return False
        ideas = list(self.doc.get("idea_ids", []))
        new_ideas = [s["idea_id"] for s in match["sides"] if s.get("idea_id") and s["idea_id"] not in ideas]
        members = list(self.doc.get("members", []))
        self.set(match_ids=[*self.doc.get("match_ids", [self.doc["match_id"]]), match["_id"]],
                 idea_ids=ideas + new_ideas)
        self.next_version(at)
        for person in members_of(match):
            if self.member(person["participant_id"]) is None:
                members.append({**person, "joined_at": at})
                self.set(members=list(members))
                idea = next((s.get("idea_id") for s in match["sides"] if person["participant_id"] in
                             (s.get("author_id"), s.get("participant_id"))), None)
                self._record("project.member_joined", participant_id=person["participant_id"],
                             city=person["city"], idea_id=idea, via="match")
        return True

    def change_plan(self, changes: Mapping[str, Any], *, city: str, at: datetime,
                    actor: str | None = None) -> list[str]:
        """New title, status, summary or next steps; project.updated names what changed (nothing: no event)."""
        changed = [k for k in PLAN_FIELDS if k in changes and changes[k] != self.doc.get(k, "" if k != "next_steps"
                                                                                          else [])]
        if not changed:
            return []
        if "status" in changed and changes["status"] not in PROJECT_STATUSES:
            raise RuleViolation(f"unknown status {changes['status']!r}")
        self.set(**{k: changes[k] for k in changed}, plan_version=self.plan_version + 1)
        self.next_version(at)
        self._record("project.updated", city=city, status=self.status, summary=self.doc.get("summary", ""),
                     next_steps=list(self.doc.get("next_steps", [])), changed=changed, actor_id=actor)
        return changed

    @property
    def plan_version(self) -> int:
        """The version of its plan (title, status, summary, next steps): what a change of the plan names to be
        told that someone changed it since. Meetings, messages and members do not move it."""
        return int(self.doc.get("plan_version") or 1)

    # --- joining on request -----------------------------------------------------------------------------------

    def request_join(self, person: str, city: str, message: str, *, at: datetime) -> dict[str, Any]:
        if self.member(person) is not None:
            raise RuleViolation("this person is a member of this project already")
        if city not in self.cities:
            raise RuleViolation(f"this project is of {' and '.join(self.cities)}: people of {city} do not join it")
        requests = list(self.doc.get("join_requests", []))
        if any(r["participant_id"] == person and r["status"] == "requested" for r in requests):
            raise RuleViolation("this person asked to join already; the project's members have not answered yet")
        if sum(r["status"] == "requested" for r in requests) >= MAX_PENDING_REQUESTS:
            raise RuleViolation("too many open join requests: the members answer those first")
        request = {"id": new_id("join"), "participant_id": person, "city": city, "message": message,
                   "status": "requested", "created_at": at, "answered_at": None, "by_city": None}
        self.set(join_requests=[*requests, request])
        self.next_version(at)
        self._record("project.join_requested", request_id=request["id"], participant_id=person, city=city,
                     status="requested", message=message)
        return request

    def answer_join(self, request_id: str, accept: bool, *, by_city: str, at: datetime) -> dict[str, Any]:
        requests = [dict(r) for r in self.doc.get("join_requests", [])]
        request = next((r for r in requests if r["id"] == request_id), None)
        if request is None:
            raise NotFound("join request", request_id)
        if request["status"] != "requested":
            raise RuleViolation(f"this join request was {request['status']} already")
        request.update(status="accepted" if accept else "declined", answered_at=at, by_city=by_city)
        self.set(join_requests=requests)
        self.next_version(at)
        if accept and self.member(request["participant_id"]) is None:
            self.set(members=[*self.doc.get("members", []), {"participant_id": request["participant_id"],
                                                             "city": request["city"], "role": JOINED,
                                                             "joined_at": at}])
            self._record("project.member_joined", participant_id=request["participant_id"], city=request["city"],
                         idea_id=None, via="join_request")
        self._record("project.join_answered", request_id=request_id, participant_id=request["participant_id"],
                     city=request["city"], status=request["status"], message=request.get("message", ""),
                     by_city=by_city)
        return request

    # --- meetings ---------------------------------------------------------------------------------------------

    def meeting(self, meeting_id: str) -> dict[str, Any]:
        found = next((m for m in self.doc.get("meetings", []) if m["id"] == meeting_id), None)
        if found is None:
            raise NotFound("meeting", meeting_id)
        return found

    def propose_meeting(self, proposer: str, title: str, duration: int, slots: Sequence[datetime],
                        link: str | None, *, at: datetime) -> dict[str, Any]:
        slots = sorted(set(slots))
        past = [s for s in slots if s <= at]
        if past:
            raise SlotRefused(f"{past[0].isoformat()} is in the past: offer times to come")
        far = [s for s in slots if s > at + MAX_AHEAD]
        if far:
            raise SlotRefused(f"{far[0].isoformat()} is more than {MAX_AHEAD.days} days ahead: offer nearer times")
        if not slots or len(slots) > MAX_SLOTS:
            raise SlotRefused(f"offer between 1 and {MAX_SLOTS} times")
        meetings = list(self.doc.get("meetings", []))
        if sum(m["status"] == "proposed" for m in meetings) >= MAX_OPEN_MEETINGS:
            raise RuleViolation("too many meetings wait for a time: schedule or let go of those first")
        # The proposer offers times that suit them: their answer is every one of them (they may change it).
        meeting = {"id": new_id("meeting"), "title": title, "proposer_id": proposer, "duration_minutes": duration,
                   "slots": slots, "answers": [{"participant_id": proposer, "slots": list(slots), "at": at}],
                   "link": link, "status": "proposed", "start": None, "sequence": 0, "created_at": at}
        self.set(meetings=[*meetings, meeting])
        self.next_version(at)
        self._record("meeting.proposed", **self._meeting_payload(meeting))
        return meeting

    def answer_meeting(self, meeting_id: str, person: str, slots: Sequence[datetime], *, at: datetime) -> None:
        """The slots that suit `person` (replacing their earlier answer)."""
        meeting = dict(self.meeting(meeting_id))
        offered = set(meeting["slots"])
        strange = [s for s in slots if s not in offered]
        if strange:
            raise SlotRefused(f"{strange[0].isoformat()} was not offered for this meeting")
        answers = [a for a in meeting.get("answers", []) if a["participant_id"] != person]
        meeting["answers"] = [*answers, {"participant_id": person, "slots": sorted(set(slots)), "at": at}]
        self._replace_meeting(meeting, at)

    def schedule_meeting(self, meeting_id: str, slot: datetime, *, at: datetime) -> dict[str, Any]:
        """The meeting set to one of its slots (again: a new time, its invitation's sequence one on)."""
        meeting = dict(self.meeting(meeting_id))
        if slot not in set(meeting["slots"]):
            raise SlotRefused(f"{slot.isoformat()} was not offered for this meeting")
        if slot <= at:
            raise SlotRefused(f"{slot.isoformat()} is in the past")
        rescheduled = meeting["status"] == "scheduled"
        if rescheduled and meeting.get("start") == slot:
            return meeting  # set to this time already: no new invitation
        meeting.update(status="scheduled", start=slot,
                       sequence=meeting.get("sequence", 0) + (1 if rescheduled else 0))
        self._replace_meeting(meeting, at)
        self._record("meeting.scheduled", **self._meeting_payload(meeting))
        return meeting

    def _replace_meeting(self, meeting: Mapping[str, Any], at: datetime) -> None:
        self.set(meetings=[dict(meeting) if m["id"] == meeting["id"] else m for m in self.doc.get("meetings", [])])
        self.next_version(at)

    @staticmethod
    def _meeting_payload(meeting: Mapping[str, Any]) -> dict[str, Any]:
        return {"meeting_id": meeting["id"], "meeting_title": meeting["title"],
                "proposer_id": meeting.get("proposer_id"), "duration_minutes": meeting["duration_minutes"],
                "slots": [s.isoformat() for s in meeting["slots"]],
                "start": meeting["start"].isoformat() if meeting.get("start") else None,
                "link": meeting.get("link"), "sequence": meeting.get("sequence", 0)}

    # --- erasure ----------------------------------------------------------------------------------------------

    def forget(self, person: str, *, at: datetime) -> bool:
        """An erased person leaves: off the members, the meetings' answers and proposers, the join requests and the
        sides; the project goes on. False when they had no part in it."""
        d = self.doc
        members = [m for m in d.get("members", []) if m["participant_id"] != person]
        meetings = [{**m, "answers": [a for a in m.get("answers", []) if a["participant_id"] != person],
                     "proposer_id": None if m.get("proposer_id") == person else m.get("proposer_id")}
                    for m in d.get("meetings", [])]
        requests = [r for r in d.get("join_requests", []) if r["participant_id"] != person]
        sides = [{**s, **{k: None for k in ("participant_id", "author_id") if s.get(k) == person}}
                 for s in d.get("sides", [])]
        if (members, meetings, requests, sides) == (d.get("members", []), d.get("meetings", []),
                                                    d.get("join_requests", []), d.get("sides", [])):
            return False
        self.set(members=members, meetings=meetings, join_requests=requests, sides=sides)
        self.next_version(at)
        return True


class SlotRefused(ValueError):
    """A meeting time that cannot be: in the past, not offered, too many (rendered as 422 on `slots`)."""


class ProjectMessage(Aggregate):
    """A member's message to the project: its text and author; the others are told (project.message_posted)."""

    @classmethod
    def post(cls, project: Project, author: Mapping[str, Any], text: str, *, at: datetime) -> ProjectMessage:
        message = cls({"_id": new_id("msg"), "project_id": project.id, "partnership": project.doc["partnership"],
                       "author_id": author["participant_id"], "city": author["city"], "text": text,
                       "created_at": at, "version": 1})
        message.record("project.message_posted", {**project._core(), "message_id": message.id,
                                                  "author_id": author["participant_id"], "city": author["city"],
                                                  "text": text}, partnership=project.doc["partnership"],
                       city=author["city"])
        return message


NO_LONGER_PROPOSED = "no longer proposed under the partnership's changed matching settings"
NOT_SHOWN_THERE = "the idea is no longer shown in this partnership"


class MatchingRun(Aggregate):
    """One pass of matching over a partnership's open ideas, after its settings changed: what it saw and did."""

    @classmethod
    def request(cls, partnership: str, *, at: datetime) -> MatchingRun:
        run = cls({"_id": new_id("run"), "partnership": partnership, "status": "requested", "requested_at": at,
                   "started_at": None, "finished_at": None, "ideas_seen": 0, "proposals_added": 0,
                   "proposals_withdrawn": 0, "version": 1})
        run.record("matching.run_requested", {"run_id": run.id, "partnership": partnership}, partnership=partnership)
        return run

    def start(self, *, at: datetime) -> None:
        self.set(status="running", started_at=at)
        self.next_version(at)

    def finish(self, *, seen: int, added: int, withdrawn: int, at: datetime) -> None:
        self.set(status="finished", finished_at=at, ideas_seen=seen, proposals_added=added,
                 proposals_withdrawn=withdrawn)
        self.next_version(at)


def expires_at(now: datetime, settings: MatchPolicy) -> datetime:
    return now + timedelta(days=settings.expiry_days)
