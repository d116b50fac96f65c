"""A participant's matches: proposals waiting for an answer, accepting and declining."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from gateway.pages.web import ServiceError, backend, call, local_path, me, participant_only, seg

bp = Blueprint("matches", __name__)
OPEN_MATCH = ("proposed", "accepted")


def view_match(match: dict[str, Any], projects: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """A match as the signed-in participant sees it: their side, the other side, whether to answer; once confirmed,
    its project (`projects` by match id) and the name of the person on the other side (both said yes)."""
    pid, city = me().participant_id, me().city
    sides = match.get("sides", [])
    mine = next((s for s in sides if s.get("city") == city
                 and pid in (s.get("author_id"), s.get("participant_id"))), None)
    other = next((s for s in sides if s is not mine), {})
    can_answer = mine is not None and match.get("status") in OPEN_MATCH and not mine.get("answer")
    project = (projects or {}).get(match.get("id", ""))
    names = {m["participant_id"]: m.get("name") for m in (project or {}).get("members", [])}
    person = other.get("participant_id") or other.get("author_id")
    return {**match, "mine": mine or {}, "other": other, "can_answer": can_answer,
            "project_id": (project or {}).get("id"), "other_name": names.get(person or "") or ""}


def projects_by_match() -> dict[str, dict[str, Any]]:
    """The visitor's projects, by each match they took in."""
    found = backend().all_pages(backend().caller_of(me()), "matching", "/projects", most=1000)
    return {match_id: p for p in found for match_id in p.get("match_ids") or [p.get("match_id")]}


def my_matches() -> list[dict[str, Any]]:
    """The matches of the visitor's ideas and of their interests, best first."""
    caller = backend().caller_of(me())
    found: dict[str, dict[str, Any]] = {}
    for idea in backend().all_pages(caller, "ideas", "/ideas", {"author_id": me().participant_id}, most=200):
        for match in call("matching", "GET", f"/ideas/{seg(idea['id'])}/matches").get("items", []):
            found[match["id"]] = match
    for match in backend().all_pages(caller, "matching", "/matches", {"kind": "interest", "city": me().city},
                                     most=500):
        if any(s.get("participant_id") == me().participant_id for s in match.get("sides", [])):
            found[match["id"]] = match
    projects = projects_by_match() if any(m.get("status") == "confirmed" for m in found.values()) else {}
    return [view_match(m, projects) for m in sorted(found.values(), key=lambda m: -m.get("score", 0))]


@bp.get("/matches", endpoint="list")
@participant_only
def list_matches() -> Any:
    everything = my_matches()
    groups = [
        ("answer", _("Waiting for your answer"), [m for m in everything if m["can_answer"]]),
        ("partner", _("Waiting for the partner city"),
         [m for m in everything if m["status"] in OPEN_MATCH and not m["can_answer"]]),
        ("confirmed", _("Confirmed"), [m for m in everything if m["status"] == "confirmed"]),
        ("closed", _("Declined, expired or withdrawn"),
         [m for m in everything if m["status"] in ("declined", "expired", "withdrawn")]),
    ]
    return render_template("pages/matches.html", groups=groups, total=len(everything))


def answer(match_id: str, accept: bool) -> Any:
    back = local_path(request.form.get("next"), url_for("pages.matches.list"))
    try:  # the matching service refuses a match that is not the visitor's (403)
        answered = call("matching", "POST", f"/matches/{seg(match_id)}/{'accept' if accept else 'decline'}",
                        body={"participant_id": me().participant_id})
    except ServiceError as exc:
        if exc.status != 409:
            raise
        flash(_("This proposal cannot be answered any more (it was answered, withdrawn or has expired)."), "error")
        return redirect(back)
    if not accept:
        flash(_("You declined the proposal."), "ok")
    elif answered.get("status") == "confirmed":
        flash(_("Both sides accepted: a joint project has formed. See “Projects”."), "ok")
    else:
        flash(_("You accepted. When the partner city accepts too, a joint project forms."), "ok")
    return redirect(back)


@bp.post("/matches/<match_id>/accept")
@participant_only
def accept(match_id: str) -> Any:
    return answer(match_id, True)


@bp.post("/matches/<match_id>/decline")
@participant_only
def decline(match_id: str) -> Any:
    return answer(match_id, False)


# Notifications name things by the API's paths (/matches/<id>); the same path without /api/v1 opens its page.
@bp.get("/matches/<match_id>", endpoint="show")
@participant_only
def show_match(match_id: str) -> Any:
    return redirect(url_for("pages.matches.list", _anchor=f"match-{match_id}"))
