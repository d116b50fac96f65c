"""A participant's joint projects."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, redirect, render_template, url_for

from gateway.pages.web import backend, me, participant_only

bp = Blueprint("projects", __name__)


@bp.get("/projects", endpoint="list")
@participant_only
def list_projects() -> Any:
    # A signed-in participant's caller gets their own projects only (the matching service decides that).
    found = backend().all_pages(backend().caller_of(me()), "matching", "/projects", most=1000)
    return render_template("pages/projects.html", projects=found)


# Notifications name things by the API's paths (/projects/<id>); the same path without /api/v1 opens its page.
@bp.get("/projects/<project_id>", endpoint="show")
@participant_only
def show_project(project_id: str) -> Any:
    return redirect(url_for("pages.projects.list", _anchor=f"project-{project_id}"))
