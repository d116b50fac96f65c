"""HTTP in and out of the matching service (marshmallow)."""

from __future__ import annotations

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from matching import domain
from services.text import OneLine, Text
from services.web import cursor_field

STATUSES = (domain.PROPOSED, domain.ACCEPTED, domain.CONFIRMED, domain.DECLINED, domain.EXPIRED, domain.WITHDRAWN)
KINDS = ("idea", "interest", "coordinator")


class Strict(Schema):
    class Meta:
        unknown = RAISE


class Side(Schema):
    city = fields.Str()
    idea_id = fields.Str(allow_none=True)
    participant_id = fields.Str(allow_none=True)
    author_id = fields.Str(allow_none=True)
    title = fields.Str(allow_none=True)
    language = fields.Str(allow_none=True)
    answer = fields.Str(allow_none=True, dump_default=None,
                        metadata={"description": "accepted / declined, or null while the side has not answered"})


class Reason(Schema):
    code = fields.Str()
    params = fields.Dict()
    text = fields.Dict(keys=fields.Str(), values=fields.Str(), metadata={"description": "The reason in de, ru, en."})


class MatchOut(Schema):
    id = fields.Str(attribute="_id")
    kind = fields.Str(metadata={"description": "idea (two ideas the rules proposed), coordinator (two ideas a "
                                               "coordinator paired) or interest (a person's interests and an idea)"})
    partnership = fields.Str()
    status = fields.Str(validate=validate.OneOf(STATUSES))
    score = fields.Float()
    parts = fields.Dict(keys=fields.Str(), values=fields.Float(),
                        metadata={"description": "semantic, theme, tags, complement: each 0..1 before weighting"})
    reasons = fields.List(fields.Nested(Reason))
    sides = fields.List(fields.Nested(Side))
    expires_at = fields.DateTime()
    created_at = fields.DateTime()
    closed_reason = fields.Str(allow_none=True, dump_default=None,
                               metadata={"description": "Why it closed without both answers (withdrawn, declined)."})
    version = fields.Int()


class MatchPage(Schema):
    items = fields.List(fields.Nested(MatchOut))
    next_cursor = fields.Str(allow_none=True)


class MatchQuery(Strict):
    status = fields.Str(validate=validate.OneOf(STATUSES))
    city = fields.Str(validate=validate.Length(max=64))
    idea = fields.Str(validate=validate.Length(max=64))
    kind = fields.Str(validate=validate.OneOf(KINDS))
    limit = fields.Int(load_default=20, validate=validate.Range(min=1, max=100))
    cursor = cursor_field("match")


class IdeaMatchesQuery(Strict):
    status = fields.Str(validate=validate.OneOf(STATUSES))


class MatchingRunOut(Schema):
    id = fields.Str(attribute="_id")
    status = fields.Str(metadata={"description": "requested, running or finished"})
    requested_at = fields.DateTime()
    started_at = fields.DateTime(allow_none=True)
    finished_at = fields.DateTime(allow_none=True)
    ideas_seen = fields.Int()
    proposals_added = fields.Int()
    proposals_withdrawn = fields.Int()


class CandidatesQuery(Strict):
    limit = fields.Int(load_default=10, validate=validate.Range(min=1, max=50))


class Candidate(Schema):
    partnership = fields.Str()
    idea = fields.Function(lambda c: Side().dump(c["sides"][1]), metadata={"description": "The partner idea."})
    score = fields.Float()
    parts = fields.Dict(keys=fields.Str(), values=fields.Float())
    reasons = fields.List(fields.Nested(Reason))
    proposed = fields.Bool(metadata={"description": "Whether the partnership's rules propose this pair (false: a "
                                                    "near miss a coordinator may pair by hand)."})
    match_id = fields.Str(allow_none=True, metadata={"description": "The pair's match, where one exists."})
    match_status = fields.Str(allow_none=True)


class CandidateList(Schema):
    items = fields.List(fields.Nested(Candidate))


class PairIn(Strict):
    ideas = fields.List(fields.Str(validate=validate.Length(min=1, max=64)), required=True,
                        validate=validate.Length(equal=2), metadata={"description": "Two ideas of partner cities."})
    note = OneLine(load_default="", validate=validate.Length(max=500),
                   metadata={"description": "Why they belong together, in the coordinator's words (shown first "
                                            "among the reasons)."})


class WithdrawIn(Strict):
    reason = OneLine(required=True, validate=validate.Length(min=1, max=500),
                     metadata={"description": "Why, for both sides (they are told)."})


class AnswerIn(Strict):
    participant_id = fields.Str(load_default=None, allow_none=True, validate=validate.Length(max=64),
                                metadata={"description": "Who answers for the city (optional)."})


class Member(Schema):
    participant_id = fields.Str()
    name = fields.Str(metadata={"description": "As the person gave it (empty while matching has not heard it)."})
    city = fields.Str()
    language = fields.Str(allow_none=True)
    role = fields.Str(allow_none=True, metadata={"description": "author (of one of its ideas), interested (whose "
                                                               "interests a match found) or joined (on request)"})
    email = fields.Str(allow_none=True, metadata={"description": "Only to keys of the members' cities and to "
                                                                "members: accepting a match shares it with the "
                                                                "project's partners."})
    joined_at = fields.DateTime(allow_none=True)


class ProjectIdea(Schema):
    idea_id = fields.Str()
    title = fields.Str(allow_none=True)
    city = fields.Str(allow_none=True)
    language = fields.Str(allow_none=True)
    author_id = fields.Str(allow_none=True)


class SlotOut(Schema):
    start = fields.DateTime(metadata={"description": "In UTC; pages show it in the viewer's city's time zone."})
    suits = fields.List(fields.Str(), metadata={"description": "The members this time suits."})


class MeetingOut(Schema):
    id = fields.Str()
    project_id = fields.Str()
    title = fields.Str()
    proposer_id = fields.Str(allow_none=True)
    duration_minutes = fields.Int()
    slots = fields.List(fields.Nested(SlotOut))
    status = fields.Str(metadata={"description": "proposed (members say which times suit) or scheduled"})
    start = fields.DateTime(allow_none=True, metadata={"description": "The time it was set to (UTC), once scheduled."})
    link = fields.Str(allow_none=True)
    sequence = fields.Int(metadata={"description": "How often it was set to a new time (the invitation's SEQUENCE)."})
    created_at = fields.DateTime()


class JoinRequestOut(Schema):
    id = fields.Str()
    project_id = fields.Str()
    participant_id = fields.Str()
    name = fields.Str()
    city = fields.Str()
    message = fields.Str()
    status = fields.Str(metadata={"description": "requested, accepted or declined"})
    created_at = fields.DateTime()
    answered_at = fields.DateTime(allow_none=True)
    by_city = fields.Str(allow_none=True)


class ProjectOut(Schema):
    id = fields.Str(attribute="_id")
    match_id = fields.Str(metadata={"description": "The match that formed it (match_ids: every match it took in)."})
    match_ids = fields.List(fields.Str())
    partnership = fields.Str()
    cities = fields.List(fields.Str())
    title = fields.Str()
    status = fields.Str(validate=validate.OneOf(domain.PROJECT_STATUSES))
    summary = fields.Str(dump_default="")
    next_steps = fields.List(fields.Str(), dump_default=list)
    ideas = fields.List(fields.Nested(ProjectIdea))
    idea_ids = fields.List(fields.Str())
    members = fields.List(fields.Nested(Member))
    member_count = fields.Int()
    is_member = fields.Bool(metadata={"description": "False for a signed-in participant who is not a member: they "
                                                    "see what it is about, and may ask to join."})
    meetings = fields.List(fields.Nested(MeetingOut), dump_default=list)
    join_requests = fields.List(fields.Nested(JoinRequestOut), dump_default=list,
                                metadata={"description": "The requests waiting for an answer."})
    sides = fields.List(fields.Nested(Side))
    version = fields.Int(metadata={"description": "The version of its plan: send it with a change of the plan to be "
                                                  "told (409) when someone changed the plan since. Meetings, "
                                                  "messages and members do not move it."})
    my_join_request = fields.Str(allow_none=True, metadata={
        "description": "To a signed-in participant who is not a member: the state of their request to join "
                       "(requested, declined), or null."})
    created_at = fields.DateTime()
    updated_at = fields.DateTime(allow_none=True)


class ProjectPage(Schema):
    items = fields.List(fields.Nested(ProjectOut))
    next_cursor = fields.Str(allow_none=True)


class ProjectPatch(Strict):
    title = OneLine(validate=validate.Length(min=1, max=300))
    status = fields.Str(validate=validate.OneOf(domain.PROJECT_STATUSES))
    summary = Text(validate=validate.Length(max=5000))
    next_steps = fields.List(OneLine(validate=validate.Length(min=1, max=500)), validate=validate.Length(max=20))
    version = fields.Int(strict=True, validate=validate.Range(min=1),
                         metadata={"description": "The plan's version you read: 409 when the plan changed since."})


class MessageIn(Strict):
    author_id = fields.Str(required=True, validate=validate.Length(min=1, max=64),
                           metadata={"description": "A member of the project in your key's city."})
    text = Text(required=True, validate=[validate.Length(min=1, max=4000),
                                         validate.Regexp(r"\S", error="write something: the text is empty")])


class MessageOut(Schema):
    id = fields.Str(attribute="_id")
    project_id = fields.Str()
    author_id = fields.Str(allow_none=True, metadata={"description": "null when the author was erased."})
    author_name = fields.Str()
    city = fields.Str()
    text = fields.Str()
    created_at = fields.DateTime()


class MessagePage(Schema):
    items = fields.List(fields.Nested(MessageOut))
    next_cursor = fields.Str(allow_none=True)


class MessageQuery(Strict):
    limit = fields.Int(load_default=50, validate=validate.Range(min=1, max=200))
    cursor = cursor_field("msg")


class MeetingIn(Strict):
    proposer_id = fields.Str(required=True, validate=validate.Length(min=1, max=64))
    title = OneLine(required=True, validate=validate.Length(min=1, max=200))
    duration_minutes = fields.Int(strict=True, required=True, validate=validate.Range(min=15, max=480))
    slots = fields.List(fields.Str(validate=validate.Length(min=10, max=40)), required=True,
                        validate=validate.Length(min=1, max=domain.MAX_SLOTS),
                        metadata={"description": "RFC 3339 times to choose from, e.g. 2026-12-10T18:00:00+01:00; a "
                                                 "time without an offset is read in the timezone field."})
    timezone = fields.Str(validate=validate.Length(max=64),
                          metadata={"description": "IANA zone for times without an offset (default: the "
                                                   "proposer's city's)."})
    link = fields.Url(schemes={"https", "http"}, validate=validate.Length(max=500), allow_none=True,
                      metadata={"description": "Where to meet online (optional)."})


class MeetingAnswerIn(Strict):
    participant_id = fields.Str(required=True, validate=validate.Length(min=1, max=64))
    slots = fields.List(fields.Str(validate=validate.Length(min=10, max=40)), required=True,
                        validate=validate.Length(max=domain.MAX_SLOTS),
                        metadata={"description": "The offered times that suit (none: an empty list)."})
    timezone = fields.Str(validate=validate.Length(max=64),
                          metadata={"description": "IANA zone for times without an offset (default: the "
                                                   "answering member's city's)."})


class ScheduleIn(Strict):
    slot = fields.Str(required=True, validate=validate.Length(min=10, max=40),
                      metadata={"description": "One of the offered times."})
    timezone = fields.Str(validate=validate.Length(max=64),
                          metadata={"description": "IANA zone for times without an offset (default: the "
                                                   "key's city's)."})


class JoinRequestIn(Strict):
    participant_id = fields.Str(required=True, validate=validate.Length(min=1, max=64))
    message = Text(load_default="", validate=validate.Length(max=1000),
                   metadata={"description": "A word to the members: who you are, what you would bring."})


class PageQuery(Strict):
    limit = fields.Int(load_default=20, validate=validate.Range(min=1, max=100))
    cursor = cursor_field("project")
    joinable = fields.Bool(load_default=False,
                           metadata={"description": "For a signed-in participant: the projects of their city's "
                                                    "partnerships they are not a member of (to ask to join)."})


class MatchingSettings(Strict):
    semantic = fields.Float(validate=validate.Range(min=0, max=10))
    theme = fields.Float(validate=validate.Range(min=0, max=10))
    tags = fields.Float(validate=validate.Range(min=0, max=10))
    complement = fields.Float(validate=validate.Range(min=0, max=10))
    threshold = fields.Float(validate=validate.Range(min=0, max=1),
                             metadata={"description": "Score (0..1) from which an idea's best candidates are "
                                                      "proposed (up to top_k)."})
    floor = fields.Float(validate=validate.Range(min=0, max=1),
                         metadata={"description": "Below the threshold, an idea's best candidate is proposed from "
                                                  "this score on when it leads the next one by the margin."})
    margin = fields.Float(validate=validate.Range(min=0, max=1),
                          metadata={"description": "How far the best candidate below the threshold must lead the "
                                                   "next one to be proposed."})
    top_k = fields.Int(strict=True, validate=validate.Range(min=1, max=20),
                       metadata={"description": "Most proposals per idea and partner city."})
    expiry_days = fields.Float(validate=validate.Range(min=0.00001, max=365),
                               metadata={"description": "Days an unanswered proposal stays open."})
    interest_threshold = fields.Float(validate=validate.Range(min=0, max=1))
    same_round = fields.Bool(metadata={"description": "Pair only ideas of one round (ideas without a round with "
                                                     "each other): a lab whose rounds stand apart."})
    last_run = fields.Nested(lambda: MatchingRunOut(), dump_only=True, allow_none=True,
                             metadata={"description": "The last time the partnership's ideas were matched again "
                                                      "(after a change of these settings); null before the first."})

    @validates_schema
    def _some_weight(self, data: dict, **_: object) -> None:
        weights = [data.get(k) for k in ("semantic", "theme", "tags", "complement") if k in data]
        if weights and sum(weights) <= 0 and len(weights) == 4:
            raise ValidationError("at least one weight must be above 0")


class FiguresQuery(Strict):
    partnership = fields.Str(required=True, validate=validate.Length(min=1, max=100))


class FiguresOut(Schema):
    matches_by_status = fields.Dict(keys=fields.Str(), values=fields.Int())
    matches_by_kind = fields.Dict(keys=fields.Str(), values=fields.Int())
    projects_by_status = fields.Dict(keys=fields.Str(), values=fields.Int())
    first_proposed_at = fields.Dict(keys=fields.Str(), values=fields.DateTime())
