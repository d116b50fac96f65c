"""The coordinators' pages: a round's overview, the matrix of matches, CSV import (all or nothing) and export."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _

from gateway.pages import csvfiles
from gateway.pages.messages import all_in_words
from gateway.pages.web import ServiceError, backend, city_name, coordinator_only, label, locale, me, seg
from gateway.themes import DEFAULT_THEMES

bp = Blueprint("coordinator", __name__)
EXPORTS = ("ideas", "matches", "projects")
LIVE = ("proposed", "accepted", "confirmed")  # what the matrix shows
OPEN = ("proposed", "accepted")  # what a coordinator may withdraw
NEAR = 3  # candidates per idea the matrix asks for: the near misses among them are shown
NEAR_MISS_MIN = 0.25  # a candidate scoring less is no near miss, only a stranger


def caller() -> Any:
    return backend().caller_of(me())


# --- what a coordinator looks at ------------------------------------------------------------------------

def partnership() -> dict[str, Any] | None:
    mine = backend().directory.list_partnerships(me().city)
    wanted = request.args.get("partnership")
    return next((p for p in mine if p["_id"] == wanted), mine[0] if mine else None)


def theme_map(p: dict[str, Any]) -> dict[str, dict[str, str]]:
    found = dict(DEFAULT_THEMES)
    for t in p.get("themes", []):
        found[t["key"]] = t["labels"]
    return found


def ideas_of(p: dict[str, Any], round_id: str | None) -> list[dict[str, Any]]:
    """The partnership's ideas (of the round, when one is named); the partnership's rounds go to g.rounds."""
    ideas = [i for i in backend().all_pages(caller(), "ideas", "/ideas")
             if i.get("city") in p["cities"] and p["_id"] in (i.get("partnerships") or [p["_id"]])]
    g.rounds = backend().call(caller(), "ideas", "GET", f"/partnerships/{seg(p['_id'])}/rounds")["items"]
    return [i for i in ideas if i.get("round_id") == round_id] if round_id else ideas


def matches_of(p: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in backend().all_pages(caller(), "matching", "/matches") if m.get("partnership") == p["_id"]]


def projects_of(p: dict[str, Any]) -> list[dict[str, Any]]:
    return [x for x in backend().all_pages(caller(), "matching", "/projects") if x.get("partnership") == p["_id"]]


def no_partnership() -> Any:
    return render_template("pages/message.html", title=_("No partnership yet"),
                           text=_("Your city is not twinned with another city on this platform yet.")), 404


def theme_rows(p: dict[str, Any], ideas: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ideas per theme and city: the themes that have any (else all)."""
    themes = theme_map(p)
    counts = Counter((i["theme"], i["city"]) for i in ideas)
    used = [t for t in themes if any(counts[(t, c)] for c in p["cities"])] or list(themes)
    return [{"theme": t, "label": label(themes.get(t), t), "cells": [counts[(t, c)] for c in p["cities"]],
             "total": sum(counts[(t, c)] for c in p["cities"])} for t in used]


@bp.get("/coordinator")
@coordinator_only
def overview() -> Any:
    p = partnership()
    if p is None:
        return no_partnership()
    round_id = request.args.get("round") or None
    ideas = ideas_of(p, round_id)
    idea_ids = {i["id"] for i in ideas}
    matches = [m for m in matches_of(p) if round_id is None
               or any(s.get("idea_id") in idea_ids for s in m.get("sides", []))]
    rows = theme_rows(p, ideas)
    return render_template(
        "pages/overview.html", partnership=p, partnerships=backend().directory.list_partnerships(me().city),
        rounds=g.rounds, round_id=round_id, rows=rows, ideas=ideas,
        totals=[sum(r["cells"][n] for r in rows) for n in range(len(p["cities"]))],
        by_status=Counter(m["status"] for m in matches), by_language=Counter(i.get("language") for i in ideas),
        projects=len(projects_of(p)), idea_status=Counter(i.get("status") for i in ideas))


def matrix_cells(p: dict[str, Any], ideas: dict[str, dict[str, Any]], home: str,
                 partner: str) -> dict[tuple[str, str], dict[str, Any]]:
    """The live matches between the home city's ideas and the partner's: (home idea, partner idea) -> match."""
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    for m in matches_of(p):
        if m.get("kind") not in ("idea", "coordinator") or m.get("status") not in LIVE:
            continue
        sides = {s.get("city"): s for s in m.get("sides", [])}
        a, b = sides.get(home), sides.get(partner)
        if a and b and a.get("idea_id") in ideas and b.get("idea_id") in ideas:
            cells[(a["idea_id"], b["idea_id"])] = m
    return cells


def near_misses(ideas: dict[str, dict[str, Any]], home: str, partner: str,
                cells: dict[tuple[str, str], dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """The pairs the rules did not propose among each home idea's best candidates (the workshop's second look)."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for a, idea in ideas.items():
        if idea.get("city") != home or idea.get("status") not in ("open", "matched"):
            continue
        try:
            items = backend().call(caller(), "matching", "GET", f"/ideas/{a}/candidates", query={"limit": NEAR})
        except ServiceError:
            continue  # not heard of yet by matching: no candidates to show
        for c in items.get("items", []):
            b = c["idea"]["idea_id"]
            if (c["idea"]["city"] == partner and b in ideas and not c["proposed"] and not c.get("match_id")
                    and c["score"] >= NEAR_MISS_MIN and (a, b) not in cells):
                found[(a, b)] = c
    return found


@bp.get("/coordinator/matrix")
@coordinator_only
def matrix() -> Any:
    p = partnership()
    if p is None:
        return no_partnership()
    round_id = request.args.get("round") or None
    theme = request.args.get("theme") or None
    ideas = {i["id"]: i for i in ideas_of(p, round_id) if theme is None or i["theme"] == theme}
    home = me().city
    partner = next(c for c in p["cities"] if c != home)
    cells = matrix_cells(p, ideas, home, partner)
    near = near_misses(ideas, home, partner, cells)
    pairs = set(cells) | set(near)
    rows = sorted({a for a, _ in pairs}, key=lambda i: ideas[i]["title"].lower())
    columns = sorted({b for _, b in pairs}, key=lambda i: ideas[i]["title"].lower())
    return render_template(
        "pages/matrix.html", partnership=p, partnerships=backend().directory.list_partnerships(home), home=home,
        partner=partner, ideas=ideas, rows=rows, columns=columns, cells=cells, near=near, OPEN=OPEN,
        counts=Counter(m["status"] for m in cells.values()), rounds=g.rounds, round_id=round_id, theme=theme,
        themes=theme_map(p))


def back_to_matrix() -> Any:
    return redirect(url_for("pages.coordinator.matrix", **{k: v for k, v in request.form.items()
                                                           if k in ("partnership", "round", "theme") and v}))


def refused(exc: ServiceError) -> str:
    """Why a service refused a coordinator's change, in the coordinator's words (its own for what it knows)."""
    if exc.status == 409:
        return _("the two ideas have a match already, or it changed meanwhile.")
    if exc.status == 403:
        return _("your key may only read; this needs a key with the write scope.")
    words = all_in_words(exc.errors, city_name) if exc.errors else {}
    return "; ".join(m for messages in words.values() for m in messages) or exc.detail


@bp.post("/coordinator/pair")
@coordinator_only
def pair() -> Any:
    """Two ideas paired by hand from the matrix (a near miss the coordinator finds right)."""
    body = {"ideas": [request.form.get("a", ""), request.form.get("b", "")], "note": request.form.get("note", "")}
    return change_from_matrix("/matches", body,
                              _("The two ideas are proposed to each other. Both sides are told and can accept."),
                              lambda why: _("The two ideas could not be paired: %(why)s", why=why))


@bp.post("/coordinator/matches/<match_id>/withdraw")
@coordinator_only
def withdraw(match_id: str) -> Any:
    return change_from_matrix(f"/matches/{seg(match_id)}/withdraw", {"reason": request.form.get("reason", "").strip()},
                              _("The proposal is withdrawn. Both sides are told why."),
                              lambda why: _("The proposal could not be withdrawn: %(why)s", why=why))


def change_from_matrix(path: str, body: dict[str, Any], done: str, failed: Callable[[str], str]) -> Any:
    """Ask the matching service for a change from a matrix form; say how it went on the matrix."""
    try:
        backend().call(caller(), "matching", "POST", path, body=body)
        flash(done, "ok")
    except ServiceError as exc:
        if exc.status not in (403, 404, 409, 422):
            raise
        flash(failed(refused(exc)), "error")
    return back_to_matrix()


@bp.get("/coordinator/projector")
@coordinator_only
def projector() -> Any:
    """A theme's ideas of both cities side by side, large, for the screen of the live workshop."""
    p = partnership()
    if p is None:
        return no_partnership()
    round_id = request.args.get("round") or None
    themes = theme_map(p)
    theme = request.args.get("theme") or next(iter(themes))
    if theme not in themes:
        return render_template("pages/message.html", title=_("Unknown theme"),
                               text=_("This partnership has no theme “%(theme)s”.", theme=theme)), 404
    ideas = [i for i in ideas_of(p, round_id) if i["theme"] == theme and i.get("status") != "withdrawn"]
    columns = [(city, sorted((i for i in ideas if i["city"] == city), key=lambda i: i["title"].lower()))
               for city in [me().city, *[c for c in p["cities"] if c != me().city]]]
    pairs: Counter[str] = Counter()
    for m in matches_of(p):
        if m.get("status") in LIVE:
            for s in m.get("sides", []):
                pairs[s.get("idea_id")] += 1
    return render_template("pages/projector.html", partnership=p, columns=columns, theme=theme, themes=themes,
                           pairs=pairs, round_id=round_id, rounds=g.rounds,
                           partnerships=backend().directory.list_partnerships(me().city))


# --- import -------------------------------------------------------------------------------------------

def theme_lookup() -> dict[str, str]:
    """Every way a CSV may name a theme (its key or a label, any case) -> its key."""
    found: dict[str, str] = {}
    for p in backend().directory.list_partnerships(me().city):
        for key, labels in theme_map(p).items():
            found[key.lower()] = key
            for text in labels.values():
                found[text.lower()] = key
    return found


def check(text: str, dry_run: bool) -> tuple[list[csvfiles.Row], str | None, dict[str, Any] | None]:
    """(rows with their errors, a problem with the file as a whole, the service's answer)."""
    try:
        rows = csvfiles.read_ideas(text, theme_lookup())
    except csvfiles.FileProblem as exc:
        return [], str(exc), None
    if not any(r.errors for r in rows):
        try:
            answer = backend().call(caller(), "ideas", "POST", "/internal/ideas/import",
                                    body={"ideas": [r.idea for r in rows], "dry_run": dry_run})
            return rows, None, answer
        except ServiceError as exc:
            problem = refused_import(exc, rows)
            if problem is not None:
                return rows, problem, None
    for row in rows:
        row.errors = all_in_words(row.errors, backend().city_name)
    return rows, None, None


def refused_import(exc: ServiceError, rows: list[csvfiles.Row]) -> str | None:
    """What the ideas service's refusal of an import means for the page: the rows' own errors (attached, None),
    or a problem with the file as a whole."""
    if exc.status == 422 and exc.body.get("rows"):
        csvfiles.attach_errors(rows, exc.body["rows"])
        return None
    if exc.status == 403:
        return "forbidden"
    if exc.status == 422:
        return "invalid:" + exc.detail
    raise exc


def file_problem(problem: str | None) -> str | None:
    if problem is None:
        return None
    kind, _sep, detail = problem.partition(":")
    return {
        "empty": _("The file is empty, or has a header line but no ideas."),
        "encoding": _("The file is not UTF-8 text. In your spreadsheet, save it as “CSV UTF-8”."),
        "columns": _("Unknown columns: %(columns)s. Allowed: %(allowed)s.", columns=detail,
                     allowed=", ".join(csvfiles.COLUMNS)),
        "missing": _("Required columns are missing: %(columns)s.", columns=detail),
        "rows": _("A file may hold at most %(count)s ideas; please split it.", count=detail),
        "malformed": _("The file is not valid CSV (check quotes)."),
        "forbidden": _("Your key may only read; importing needs a key with the write scope."),
        "invalid": _("The service refused the import: %(detail)s", detail=detail),
        "upload": _("Please choose a CSV file."),
    }.get(kind, problem)


def import_page(rows: list[csvfiles.Row] | None, problem: str | None, text: str, status: int,
                ready: bool = False) -> Any:
    return render_template("pages/import.html", rows=rows, problem=file_problem(problem), text=text,
                           columns=csvfiles.COLUMNS, ready=ready), status


@bp.get("/coordinator/import")
@coordinator_only
def import_form() -> Any:
    return import_page(None, None, "", 200)


@bp.get("/coordinator/import/template.csv")
@coordinator_only
def import_template() -> Response:
    return Response("\ufeff" + csvfiles.TEMPLATE, mimetype="text/csv",
                    headers={"Content-Disposition": 'attachment; filename="ideas-template.csv"'})


@bp.post("/coordinator/import")
@coordinator_only
def import_preview() -> Any:
    upload = request.files.get("file")
    if upload is not None and upload.filename:
        try:
            text = csvfiles.decode(upload.read())
        except csvfiles.FileProblem as exc:
            return import_page(None, str(exc), "", 422)
    else:
        text = request.form.get("text", "")
    if not text.strip():
        return import_page(None, "upload", "", 422)
    rows, problem, _answer = check(text, dry_run=True)
    bad = problem is not None or any(r.errors for r in rows)
    return import_page(rows, problem, text, 422 if bad else 200, ready=not bad)


@bp.post("/coordinator/import/confirm")
@coordinator_only
def import_confirm() -> Any:
    text = request.form.get("text", "")
    rows, problem, answer = check(text, dry_run=False)
    if answer is None:
        # Rows with errors are shown row by row; a file-level problem (or no rows at all) above them.
        return import_page(rows, problem or (None if rows else "empty"), text, 422)
    flash(_("Imported %(count)s ideas. Matching runs for each of them now.", count=answer.get("count", 0)), "ok")
    return redirect(url_for("pages.coordinator.overview"))


# --- export -------------------------------------------------------------------------------------------

@bp.get("/coordinator/export/<kind>.csv")
@coordinator_only
def export(kind: str) -> Any:
    if kind not in EXPORTS:
        return render_template("pages/message.html", title=_("Not found"), text=_("There is no such export.")), 404
    p = partnership()
    if p is None:
        return no_partnership()
    if kind == "ideas":
        body = csvfiles.write(csvfiles.IDEA_HEADER, csvfiles.idea_rows(ideas_of(p, request.args.get("round"))))
    elif kind == "matches":
        body = csvfiles.write(csvfiles.MATCH_HEADER, csvfiles.match_rows(matches_of(p), locale()))
    else:
        body = csvfiles.write(csvfiles.PROJECT_HEADER, csvfiles.project_rows(projects_of(p)))
    name = f"{p['_id']}-{kind}.csv"
    return Response(body, mimetype="text/csv", headers={"Content-Disposition": f'attachment; filename="{name}"'})
