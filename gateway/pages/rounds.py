"""The coordinators' rounds: open a round of the lab with its dates, move it on, and its report (figures drawn on the
server as SVG, printable, and as CSV)."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext, ngettext

from gateway import domain, usecases
from gateway.pages.coordinator import caller, no_partnership, partnership, theme_map
from gateway.pages.projects import PROJECT_STATUS
from gateway.pages.web import (
    IDEA_STATUS,
    MATCH_STATUS,
    ServiceError,
    backend,
    city_name,
    city_zone,
    coordinator_only,
    label,
    language_name,
    me,
    seg,
)

bp = Blueprint("rounds", __name__)
PHASE = {"collecting": lazy_gettext("collecting ideas"), "matching": lazy_gettext("matching (the workshop)"),
         "projects": lazy_gettext("projects"), "closed": lazy_gettext("closed")}
ZONES = ("Europe/Berlin", "Europe/Moscow", "Europe/Paris", "Europe/Kyiv", "Europe/Warsaw", "UTC")


class _Services:
    """usecases.Services for a signed-in coordinator."""

    def get(self, service: str, path: str) -> Any:
        return backend().call(caller(), service, "GET", path)


@bp.get("/coordinator/rounds")
@coordinator_only
def list_rounds() -> Any:
    p = partnership()
    if p is None:
        return no_partnership()
    rounds = backend().call(caller(), "ideas", "GET", f"/partnerships/{seg(p['_id'])}/rounds")["items"]
    return render_template("pages/rounds.html", p=p, rounds=rounds, PHASE=PHASE, zones=ZONES,
                           zone=city_zone(me().city), values=request.args, local_input=local_input)


def local_input(moment: str, zone: str) -> str:
    """A stored time as a datetime-local field shows it, in the round's zone (empty when it is not a time)."""
    try:
        return datetime.fromisoformat(moment).astimezone(ZoneInfo(zone)).strftime("%Y-%m-%dT%H:%M")
    except (ValueError, KeyError, TypeError):
        return ""


@bp.post("/coordinator/rounds")
@coordinator_only
def open_round() -> Any:
    p = partnership()
    if p is None:
        return no_partnership()
    form = request.form
    zone = form.get("timezone") or city_zone(me().city)
    body = {"name": form.get("name", "").strip(), "collect_until": form.get("collect_until", ""),
            "workshop_at": _aware(form.get("workshop_at", ""), zone), "projects_from": form.get("projects_from", ""),
            "timezone": zone}
    try:
        backend().call(caller(), "ideas", "POST", f"/partnerships/{seg(p['_id'])}/rounds", body=body)
    except ServiceError as exc:
        if exc.status not in (409, 422):
            raise
        flash(_("The round was not opened: %(why)s", why=round_refusal(exc)), "error")
        return redirect(url_for("pages.rounds.list_rounds", partnership=p["_id"]))
    flash(_("The round is open: new ideas of both cities join it until collecting ends."), "ok")
    return redirect(url_for("pages.rounds.list_rounds", partnership=p["_id"]))


ROUND_HINTS = {
    "name": lazy_gettext("give it a name of one line"),
    "collect_until": lazy_gettext("give the last day of collecting"),
    "workshop_at": lazy_gettext("the workshop comes after collecting ends (and needs a day and a time)"),
    "projects_from": lazy_gettext("projects start on or after the workshop's day"),
    "timezone": lazy_gettext("choose a time zone"),
}


def round_refusal(exc: ServiceError) -> str:
    """Why a round was not opened, in the visitor's words."""
    if exc.status == 409:
        if "still collects" in exc.detail:
            return _("another round of this partnership still collects ideas: open the next one once it has "
                     "stopped (or move it on)")
        return _("the partnership has a round of this name already")
    fields = exc.errors if isinstance(exc.errors, dict) else {}
    return "; ".join(str(words) for name, words in ROUND_HINTS.items() if name in fields) or exc.detail


def _aware(local: str, zone: str) -> str:
    """A datetime-local field's value read in `zone`, with its offset (as the API wants it); as sent when it is no
    time (the API then says what is wrong)."""
    try:
        return datetime.fromisoformat(local).replace(tzinfo=ZoneInfo(zone)).isoformat()
    except (ValueError, KeyError):
        return local


@bp.post("/coordinator/partnerships/<pid>/adopt-ideas")
@coordinator_only
def adopt_ideas(pid: str) -> Any:
    """The city's open ideas written before the partnership existed are shown and matched in it from now on."""
    adopted = backend().call(caller(), "ideas", "POST", f"/partnerships/{seg(pid)}/adopt-ideas")["adopted"]
    flash(ngettext("%(num)d idea of your city is now shown in this partnership.",
                   "%(num)d ideas of your city are now shown in this partnership.", adopted), "ok")
    return redirect(url_for("pages.rounds.list_rounds", partnership=pid))


@bp.post("/coordinator/rounds/<round_id>/advance")
@coordinator_only
def advance(round_id: str) -> Any:
    seen = request.form.get("phase")
    try:
        moved = backend().call(caller(), "ideas", "POST", f"/rounds/{seg(round_id)}/advance",
                               body={"from_phase": seen} if seen in PHASE else None)
    except ServiceError as exc:
        if exc.status != 409:
            raise
        flash(_("This round was moved on meanwhile (or is closed): here it is as it is now."), "error")
        return redirect(url_for("pages.rounds.list_rounds"))
    flash(_("The round moved on: %(phase)s.", phase=PHASE.get(moved["phase"], moved["phase"])), "ok")
    return redirect(url_for("pages.rounds.list_rounds", partnership=moved["partnership"]))


@bp.post("/coordinator/rounds/<round_id>/change")
@coordinator_only
def change(round_id: str) -> Any:
    """A round's new name or dates, as the coordinator typed them (in the zone they chose)."""
    form = request.form
    zone = form.get("timezone") or city_zone(me().city)
    body = {"name": form.get("name", "").strip(), "collect_until": form.get("collect_until", ""),
            "workshop_at": _aware(form.get("workshop_at", ""), zone), "projects_from": form.get("projects_from", ""),
            "timezone": zone, **({"version": int(form["version"])} if form.get("version", "").isdigit() else {})}
    try:
        changed = backend().call(caller(), "ideas", "PATCH", f"/rounds/{seg(round_id)}", body=body)
    except ServiceError as exc:
        if exc.status not in (409, 422):
            raise
        flash(_("The round was not changed: %(why)s", why=change_refusal(exc)), "error")
        return redirect(url_for("pages.rounds.list_rounds", _anchor=f"round-{round_id}"))
    flash(_("The round is changed: %(name)s.", name=changed["name"]), "ok")
    return redirect(url_for("pages.rounds.list_rounds", partnership=changed["partnership"],
                            _anchor=f"round-{round_id}"))


def change_refusal(exc: ServiceError) -> str:
    """Why a round was not changed, in the visitor's words."""
    if exc.status == 409 and "version" in exc.detail:
        return _("someone changed it meanwhile; here it is as it is now")
    if exc.status == 409 and "closed" in exc.detail:
        return _("it is closed")
    if exc.status == 409 and "still collects" in exc.detail:
        return _("another round of this partnership collects ideas then")
    return round_refusal(exc)


@bp.get("/coordinator/rounds/<round_id>/report")
@coordinator_only
def report(round_id: str) -> Any:
    figures = usecases.round_report(_Services(), round_id)
    p = next((x for x in backend().directory.list_partnerships(me().city)
              if x["_id"] == figures["round"]["partnership"]), None)
    themes = theme_map(p) if p else {}
    return render_template("pages/report.html", r=figures["round"], f=figures, PHASE=PHASE,
                           cities=figures["round"].get("cities", []), charts=charts(figures), waited=waited,
                           theme_label=lambda key: label(themes.get(key), key))


def waited(hours: float | None) -> str:
    """A wait in words a council reads: minutes under an hour, hours under two days, else days."""
    if hours is None:
        return "–"
    if hours * 60 < 1:
        return _("under a minute")
    if hours < 1:
        return _("%(n)s min", n=round(hours * 60))
    if hours < 48:
        return _("%(n)s h", n=f"{hours:.1f}")
    return _("%(n)s days", n=f"{hours / 24:.1f}")


def charts(f: dict[str, Any]) -> list[tuple[str, list[tuple[str, int]], str]]:
    """The report's bar charts: (title, [(label in the visitor's language, value)], id)."""
    ideas, matches, projects = f["ideas"], f["matches"], f["projects"]
    return [
        (_("Ideas by city"), [(city_name(c), n) for c, n in ideas["by_city"].items()], "chart-cities"),
        (_("Ideas by language"), [(language_name(code) or code, n) for code, n in ideas["by_language"].items()],
         "chart-languages"),
        (_("Matches by status"), [(str(MATCH_STATUS.get(s, s)), n) for s, n in matches["by_status"].items()],
         "chart-matches"),
        (_("Projects by status"), [(str(PROJECT_STATUS.get(s, s)), n) for s, n in projects["by_status"].items()],
         "chart-projects"),
    ]


# The report's CSV in the coordinator's words (the API's JSON report keeps the keys, for machines).
FIGURE = {"ideas": lazy_gettext("Ideas"), "ideas by theme and city": lazy_gettext("Ideas by theme and city"),
          "ideas by city": lazy_gettext("Ideas by city"), "ideas by language": lazy_gettext("Ideas by language"),
          "ideas by status": lazy_gettext("Ideas by status"), "matches": lazy_gettext("Matches"),
          "matches by status": lazy_gettext("Matches by status"), "matches by kind": lazy_gettext("Matches by kind"),
          "projects": lazy_gettext("Projects"), "projects by status": lazy_gettext("Projects by status"),
          "participants: authors": lazy_gettext("wrote ideas of this round"),
          "participants: registered": lazy_gettext("registered participants"),
          "first proposal": lazy_gettext("Waiting for a first proposal")}
KIND = {"idea": lazy_gettext("two ideas"), "interest": lazy_gettext("an idea and a person's interests"),
        "coordinator": lazy_gettext("paired by a coordinator")}
WAITING = {"ideas_proposed": lazy_gettext("ideas with a proposal"), "ideas_waiting": lazy_gettext("ideas without one"),
           "median_hours": lazy_gettext("half waited at most (hours)"),
           "p90_hours": lazy_gettext("nine in ten waited at most (hours)"),
           "max_hours": lazy_gettext("the longest wait (hours)")}


def in_words(row: tuple[str, str, str, Any], theme_label: Any) -> list[Any]:
    """A row of domain.report_rows with its keys in the visitor's language."""
    figure, what, of, value = row
    if what == "total":
        shown = _("total")
    elif "theme" in figure:
        shown = theme_label(what)
    elif "by city" in figure or figure.startswith("participants"):
        shown = city_name(what)
    else:
        words = {"ideas by language": {what: language_name(what) or what}, "ideas by status": IDEA_STATUS,
                 "matches by status": MATCH_STATUS, "projects by status": PROJECT_STATUS, "matches by kind": KIND,
                 "first proposal": WAITING}.get(figure, {})
        shown = words.get(what, what)
    return [str(FIGURE.get(figure, figure)), str(shown), city_name(of) if of else "", value]


@bp.get("/coordinator/rounds/<round_id>/report.csv")
@coordinator_only
def report_csv(round_id: str) -> Response:
    figures = usecases.round_report(_Services(), round_id)
    p = next((x for x in backend().directory.list_partnerships(me().city)
              if x["_id"] == figures["round"]["partnership"]), None)
    themes = theme_map(p) if p else {}
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([_("Figure"), _("What"), _("City"), _("Value")])
    writer.writerows(in_words(row, lambda key: label(themes.get(key), key)) for row in domain.report_rows(figures))
    name = f"report-{round_id}.csv"
    return Response("\ufeff" + out.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})
