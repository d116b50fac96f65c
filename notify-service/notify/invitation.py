"""Calendar invitations (iCalendar, RFC 5545) for the members' e-mails of a scheduled meeting, with `icalendar`.

The text is made once when the notification is stored (usecases) and kept in it: the sender attaches it as it is,
so that a mail sent again after a crash carries the same invitation. A calendar recognises a later change of the
same meeting by its UID and a higher SEQUENCE.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import icalendar

from notify.domain import Invitation

PRODID = "-//Twin City Lab//notify//EN"
METHOD = "PUBLISH"  # an entry to put into one's calendar: no replies are asked for
FILENAME = "meeting.ics"


def _calendar() -> icalendar.Calendar:
    calendar = icalendar.Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("method", METHOD)
    return calendar


def ics(invitation: Invitation, page_url: str, stamp: datetime) -> str:
    """The meeting as a calendar of one event: its times in UTC, the project page in its description, the video link
    (when there is one) as its location and URL. `stamp`: when the meeting was set (the event's time)."""
    event = icalendar.Event()
    event.add("uid", invitation.uid)
    event.add("dtstamp", stamp.astimezone(UTC))
    event.add("dtstart", invitation.start.astimezone(UTC))
    event.add("dtend", invitation.end.astimezone(UTC))
    event.add("sequence", invitation.sequence)
    event.add("summary", invitation.summary)
    event.add("description", "\n".join(filter(None, (page_url, invitation.video_link))))
    if invitation.video_link:
        event.add("location", invitation.video_link)
        if invitation.video_link.startswith(("https://", "http://")):
            event.add("url", invitation.video_link)
    calendar = _calendar()
    calendar.add_component(event)
    return calendar.to_ical().decode("utf-8")


def merge(texts: Sequence[str]) -> str | None:
    """Several invitations as one calendar (a daily digest carries the meetings of its day), None for none. A meeting
    moved during the day is in it once, as it was set last (its highest SEQUENCE)."""
    latest: dict[str, icalendar.Event] = {}
    for text in texts:
        for event in icalendar.Calendar.from_ical(text).walk("VEVENT"):
            uid = str(event.get("uid"))
            if uid not in latest or int(event.get("sequence", 0)) >= int(latest[uid].get("sequence", 0)):
                latest[uid] = event
    if not latest:
        return None
    calendar = _calendar()
    for event in latest.values():
        calendar.add_component(event)
    return calendar.to_ical().decode("utf-8")
