"""A participant's joint projects: the workspace of each (plan, members, messages, meetings, join requests) and the
projects of their partnerships they may ask to join. Every form posts to the matching service's API in the visitor's
name; the service decides who may do what. A coordinator reads the projects of their city's partnerships: plan,
members, meetings and who asks to join, without the forms (the members' messages stay theirs)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext

from gateway.pages.web import ServiceError, backend, call, me, participant_only, seg, signed_in

bp = Blueprint("projects", __name__)
PROJECT_STATUS = {"forming": lazy_gettext("forming"), "active": lazy_gettext("active"),
                  "paused": lazy_gettext("paused"), "done": lazy_gettext("done")}
ROLE = {"author": lazy_gettext("author of an idea"), "interested": lazy_gettext("interested"),
        "joined": lazy_gettext("joined on request")}
MOST_MESSAGES = 500  # the workspace shows a project's last 500 messages at most


@bp.get("/projects", endpoint="list")
@signed_in
def list_projects() -> Any:
    # A signed-in participant's caller gets their own projects only, a coordinator's those of the city's
    # partnerships (the matching service decides that).
    caller = backend().caller_of(me())
    mine = list(backend().all_pages(caller, "matching", "/projects", most=1000))
    joinable = [] if me().coordinator else list(
        backend().all_pages(caller, "matching", "/projects", {"joinable": "true"}, most=200))
    return render_template("pages/projects.html", projects=mine, joinable=joinable, PROJECT_STATUS=PROJECT_STATUS)


# Notifications name things by the API's paths (/projects/<id>); the same path without /api/v1 opens its page.
@bp.get("/projects/<project_id>", endpoint="show")
@signed_in
def show_project(project_id: str, **plan: Any) -> Any:
    """The workspace; `plan`: a plan form to show again as it was sent (plan_form) with what was wrong (plan_error).
    A coordinator sees it without forms and without the members' messages."""
    project = call("matching", "GET", f"/projects/{seg(project_id)}")
    messages = messages_of(project_id) if project.get("is_member") and me().participant else []
    return render_template("pages/project.html", p=project, messages=messages, PROJECT_STATUS=PROJECT_STATUS,
                           ROLE=ROLE, me_id=me().participant_id,
                           other_cities=[c for c in project.get("cities", []) if c != me().city],
                           plan_form=plan.get("plan_form"), plan_error=plan.get("plan_error"))


def messages_of(project_id: str) -> list[dict[str, Any]]:
    """The project's messages, oldest first (the last MOST_MESSAGES)."""
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = call("matching", "GET", f"/projects/{seg(project_id)}/messages",
                    query={"limit": 200, "cursor": cursor})
        found += page.get("items", [])
        cursor = page.get("next_cursor")
        if not cursor:
            return found[-MOST_MESSAGES:]


def acted(project_id: str, anchor: str, done: str, action: Callable[[], Any]) -> Any:
    """Do what a form asks; back to the workspace with what became of it. A refusal the visitor can mend (422, 409)
    is said on the page; others are the error pages'."""
    try:
        action()
    except ServiceError as exc:
        if exc.status not in (409, 422):
            raise
        flash(refusal(exc), "error")
    else:
        flash(done, "ok")
    return redirect(url_for("pages.projects.show", project_id=project_id, _anchor=anchor))


def refusal(exc: ServiceError) -> str:
    """What went wrong, in the visitor's language where the page knows the case (the service's words after it)."""
    if exc.status == 409 and "version" in exc.detail:
        return _("Someone changed the project meanwhile. Here it is as it is now; make your change again.")
    if exc.status == 409 and "asked to join already" in exc.detail:
        return _("You asked to join already. The members have not answered yet.")
    fields = exc.errors if isinstance(exc.errors, dict) else {}
    known = [str(words) for name, words in FIELD_HINTS.items() if name in fields]
    if known:
        return " ".join(known)
    said = "; ".join(m for messages in fields.values() for m in (messages if isinstance(messages, list)
                                                                  else [messages]) if isinstance(m, str))
    return said or exc.detail


FIELD_HINTS = {
    "slots": lazy_gettext("Offer one to ten times to come, within the next two years (a time the clocks skip "
                          "when summer time begins does not exist)."),
    "slot": lazy_gettext("Choose one of the offered times that is still to come."),
    "duration_minutes": lazy_gettext("A meeting lasts 15 to 480 minutes."),
    "title": lazy_gettext("Give it a title of one line."),
    "text": lazy_gettext("Write a message of up to 4,000 characters."),
    "link": lazy_gettext("The video link must be a web address (https://…)."),
    "summary": lazy_gettext("A summary has up to 5,000 characters."),
    "next_steps": lazy_gettext("At most 20 next steps, each one line of up to 500 characters."),
    "status": lazy_gettext("Choose one of the statuses."),
    "message": lazy_gettext("A word to the members has up to 1,000 characters."),
}


@bp.post("/projects/<project_id>/plan")
@participant_only
def change_plan(project_id: str) -> Any:
    form = request.form
    body = {"title": form.get("title", "").strip(), "status": form.get("status", ""),
            "summary": form.get("summary", "").strip(),
            "next_steps": [s.strip() for s in form.get("next_steps", "").splitlines() if s.strip()]}
    if form.get("version", "").isdigit():
        body["version"] = int(form["version"])
    try:
        call("matching", "PATCH", f"/projects/{seg(project_id)}", body=body)
    except ServiceError as exc:
        if exc.status not in (409, 422):
            raise
        # What the visitor typed stays in the form, with what was wrong (and the project as it is now).
        typed = {**body, "next_steps": form.get("next_steps", "")}
        return show_project(project_id, plan_form=typed, plan_error=refusal(exc)), exc.status
    flash(_("The plan is saved. The other members are told."), "ok")
    return redirect(url_for("pages.projects.show", project_id=project_id, _anchor="plan"))


@bp.post("/projects/<project_id>/messages")
@participant_only
def post_message(project_id: str) -> Any:
    body = {"author_id": me().participant_id, "text": request.form.get("text", "").strip()}
    return acted(project_id, "messages", _("Your message is sent to the other members."),
                 lambda: call("matching", "POST", f"/projects/{seg(project_id)}/messages", body=body))


@bp.post("/projects/<project_id>/meetings")
@participant_only
def propose_meeting(project_id: str) -> Any:
    form = request.form
    duration = form.get("duration_minutes", "60")
    body = {"proposer_id": me().participant_id, "title": form.get("title", "").strip(),
            "duration_minutes": int(duration) if duration.isdigit() else 0,
            # datetime-local fields: times without an offset, read in the visitor's city's zone by the service
            "slots": [v.strip() for v in form.getlist("slot") if v.strip()],
            **({"link": form["link"].strip()} if form.get("link", "").strip() else {})}
    return acted(project_id, "meetings", _("The meeting is offered. The other members say which times suit them."),
                 lambda: call("matching", "POST", f"/projects/{seg(project_id)}/meetings", body=body))


@bp.post("/projects/<project_id>/meetings/<meeting_id>/answer")
@participant_only
def answer_meeting(project_id: str, meeting_id: str) -> Any:
    body = {"participant_id": me().participant_id, "slots": request.form.getlist("slot")}
    return acted(project_id, f"meeting-{meeting_id}", _("Your answer is saved."),
                 lambda: call("matching", "POST", f"/meetings/{seg(meeting_id)}/answer", body=body))


@bp.post("/projects/<project_id>/meetings/<meeting_id>/schedule")
@participant_only
def schedule_meeting(project_id: str, meeting_id: str) -> Any:
    body = {"slot": request.form.get("slot", "")}
    return acted(project_id, f"meeting-{meeting_id}",
                 _("The meeting is set. Every member gets an invitation for their calendar."),
                 lambda: call("matching", "POST", f"/meetings/{seg(meeting_id)}/schedule", body=body))


@bp.post("/projects/<project_id>/join")
@participant_only
def request_join(project_id: str) -> Any:
    body = {"participant_id": me().participant_id, "message": request.form.get("message", "").strip()}
    return acted(project_id, "join", _("You asked to join. The members answer, and you are told."),
                 lambda: call("matching", "POST", f"/projects/{seg(project_id)}/join-requests", body=body))


@bp.post("/projects/<project_id>/join-requests/<request_id>/<any(accept, decline):answer>")
@participant_only
def answer_join(project_id: str, request_id: str, answer: str) -> Any:
    done = _("They are a member of the project now.") if answer == "accept" else _("The request is declined.")
    return acted(project_id, "join-requests", done,
                 lambda: call("matching", "POST", f"/join-requests/{seg(request_id)}/{answer}"))
