"""The coordinators' pages: a round's overview, the matrix of matches, CSV import (all or nothing) and export."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Blueprint, Response, flash, g, redirect, render_template, request, session, url_for
from flask_babel import gettext as _

from gateway.pages import csvfiles
from gateway.pages.messages import all_in_words
from gateway.pages.signin import Sessions
from gateway.pages.web import Backend, ServiceError, Visitor, label, local_path, locale
from gateway.themes import DEFAULT_THEMES

EXPORTS = ("ideas", "matches", "projects")
LIVE = ("proposed", "accepted", "confirmed")  # what the matrix shows


def register(bp: Blueprint, backend: Backend, sessions: Sessions) -> None:
    def coordinator_only(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            visitor = g.get("visitor")
            if visitor is None or not visitor.coordinator:
                return redirect(url_for("pages.coordinator_signin", next=request.full_path.rstrip("?")))
            return view(*args, **kwargs)
        return wrapped

    def me() -> Visitor:
        return g.visitor

    def caller() -> Any:
        return backend.caller_of(me())

    @bp.route("/coordinator/signin", methods=["GET", "POST"])
    def coordinator_signin() -> Any:
        next_page = local_path(request.values.get("next"), url_for("pages.overview"))
        if request.method == "GET":
            return render_template("pages/coordinator_signin.html", error=None, next=next_page)
        key = backend.keys.authenticate(request.form.get("key", "").strip())
        if key is None or key.city is None or not key.allows("read"):
            error = (_("This key is unknown, revoked or expired.") if key is None
                     else _("Sign in with the key of a city (an admin key belongs to no city).") if key.city is None
                     else _("This key may not read; the coordinator pages need a key with the read scope."))
            return render_template("pages/coordinator_signin.html", error=error, next=next_page), 401
        lang = session.get("lang")
        session.clear()
        if lang:
            session["lang"] = lang
        # The key's id and a fingerprint of its secret, never the secret itself: the cookie is signed, not secret.
        current = backend.coordinator_key(key.id)
        session["who"] = {"kind": "coordinator", "key": key.id, "city": key.city, "fp": current[1] if current else "",
                          "sid": sessions.open(key.city, key_id=key.id)}  # signing out ends it on the server
        session.permanent = True
        city = backend.directory.city(key.city)
        flash(_("You are signed in as coordinator of %(city)s.", city=city["name"] if city else key.city), "ok")
        return redirect(next_page)

    # --- what a coordinator looks at ------------------------------------------------------------------------

    def partnership() -> dict[str, Any] | None:
        mine = backend.directory.list_partnerships(me().city)
        wanted = request.args.get("partnership")
        return next((p for p in mine if p["_id"] == wanted), mine[0] if mine else None)

    def theme_map(p: dict[str, Any]) -> dict[str, dict[str, str]]:
        found = dict(DEFAULT_THEMES)
        for t in p.get("themes", []):
            found[t["key"]] = t["labels"]
        return found

    def ideas_of(p: dict[str, Any], round_id: str | None) -> list[dict[str, Any]]:
        ideas = [i for i in backend.all_pages(caller(), "ideas", "/ideas")
                 if i.get("city") in p["cities"] and p["_id"] in (i.get("partnerships") or [p["_id"]])]
        rounds = sorted({i.get("round_id") for i in ideas if i.get("round_id")})
        g.rounds = rounds
        if round_id:
            ideas = [i for i in ideas if i.get("round_id") == round_id]
        return ideas

    def matches_of(p: dict[str, Any]) -> list[dict[str, Any]]:
        return [m for m in backend.all_pages(caller(), "matching", "/matches") if m.get("partnership") == p["_id"]]

    def projects_of(p: dict[str, Any]) -> list[dict[str, Any]]:
        return [x for x in backend.all_pages(caller(), "matching", "/projects") if x.get("partnership") == p["_id"]]

    def no_partnership() -> Any:
        return render_template("pages/message.html", title=_("No partnership yet"),
                               text=_("Your city is not twinned with another city on this platform yet.")), 404

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
        themes = theme_map(p)
        counts = Counter((i["theme"], i["city"]) for i in ideas)
        used = [t for t in themes if any(counts[(t, c)] for c in p["cities"])] or list(themes)
        rows = [{"theme": t, "label": label(themes.get(t), t), "cells": [counts[(t, c)] for c in p["cities"]],
                 "total": sum(counts[(t, c)] for c in p["cities"])} for t in used]
        by_status = Counter(m["status"] for m in matches)
        by_language = Counter(i.get("language") for i in ideas)
        return render_template("pages/overview.html", partnership=p, partnerships=backend.directory.list_partnerships(
            me().city), rounds=g.rounds, round_id=round_id, rows=rows, ideas=ideas,
            totals=[sum(r["cells"][n] for r in rows) for n in range(len(p["cities"]))],
            by_status=by_status, by_language=by_language, projects=len(projects_of(p)),
            idea_status=Counter(i.get("status") for i in ideas))

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
        cells: dict[tuple[str, str], dict[str, Any]] = {}
        for m in matches_of(p):
            if m.get("kind") != "idea" or m.get("status") not in LIVE:
                continue
            sides = {s.get("city"): s for s in m.get("sides", [])}
            a, b = sides.get(home), sides.get(partner)
            if not a or not b or a.get("idea_id") not in ideas or b.get("idea_id") not in ideas:
                continue
            cells[(a["idea_id"], b["idea_id"])] = m
        rows = sorted({a for a, _ in cells}, key=lambda i: ideas[i]["title"].lower())
        columns = sorted({b for _, b in cells}, key=lambda i: ideas[i]["title"].lower())
        counts = Counter(m["status"] for m in cells.values())
        return render_template("pages/matrix.html", partnership=p, partnerships=backend.directory.list_partnerships(
            home), home=home, partner=partner, ideas=ideas, rows=rows, columns=columns, cells=cells,
            counts=counts, rounds=g.rounds, round_id=round_id, theme=theme, themes=theme_map(p))

    # --- import -------------------------------------------------------------------------------------------

    def theme_lookup() -> dict[str, str]:
        found: dict[str, str] = {}
        for p in backend.directory.list_partnerships(me().city):
            for key, labels in theme_map(p).items():
                found[key.lower()] = key
                for text in labels.values():
                    found[text.lower()] = key
        return found

    def translate(rows: list[csvfiles.Row]) -> None:
        for row in rows:
            row.errors = all_in_words(row.errors, backend.city_name)

    def check(text: str, dry_run: bool) -> tuple[list[csvfiles.Row], str | None, dict[str, Any] | None]:
        """(rows with their errors, a problem with the file as a whole, the service's answer)."""
        try:
            rows = csvfiles.read_ideas(text, theme_lookup())
        except csvfiles.FileProblem as exc:
            return [], str(exc), None
        if any(r.errors for r in rows):
            translate(rows)
            return rows, None, None
        try:
            answer = backend.call(caller(), "ideas", "POST", "/internal/ideas/import",
                                  body={"ideas": [r.idea for r in rows], "dry_run": dry_run})
        except ServiceError as exc:
            if exc.status == 422 and exc.body.get("rows"):
                csvfiles.attach_errors(rows, exc.body["rows"])
                translate(rows)
                return rows, None, None
            if exc.status == 403:
                return rows, "forbidden", None
            if exc.status == 422:
                return rows, "invalid:" + exc.detail, None
            raise
        return rows, None, answer

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

    @bp.get("/coordinator/import")
    @coordinator_only
    def import_form() -> Any:
        return render_template("pages/import.html", rows=None, problem=None, text="", columns=csvfiles.COLUMNS)

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
                return render_template("pages/import.html", rows=None, problem=file_problem(str(exc)), text="",
                                       columns=csvfiles.COLUMNS), 422
        else:
            text = request.form.get("text", "")
        if not text.strip():
            return render_template("pages/import.html", rows=None, problem=file_problem("upload"), text="",
                                   columns=csvfiles.COLUMNS), 422
        rows, problem, _answer = check(text, dry_run=True)
        bad = problem is not None or any(r.errors for r in rows)
        return render_template("pages/import.html", rows=rows, problem=file_problem(problem), text=text,
                               columns=csvfiles.COLUMNS, ready=not bad), 422 if bad else 200

    @bp.post("/coordinator/import/confirm")
    @coordinator_only
    def import_confirm() -> Any:
        text = request.form.get("text", "")
        rows, problem, answer = check(text, dry_run=False)
        if answer is None:
            # Rows with errors are shown row by row; a file-level problem (or no rows at all) above them.
            problem = problem or (None if rows else "empty")
            return render_template("pages/import.html", rows=rows, problem=file_problem(problem),
                                   text=text, columns=csvfiles.COLUMNS, ready=False), 422
        flash(_("Imported %(count)s ideas. Matching runs for each of them now.", count=answer.get("count", 0)), "ok")
        return redirect(url_for("pages.overview"))

    # --- export -------------------------------------------------------------------------------------------

    @bp.get("/coordinator/export/<kind>.csv")
    @coordinator_only
    def export(kind: str) -> Any:
        if kind not in EXPORTS:
            return render_template("pages/message.html", title=_("Not found"),
                                   text=_("There is no such export.")), 404
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
