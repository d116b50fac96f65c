"""A round's report from its two halves (gateway.domain.round_report): the figures and their CSV rows."""

from __future__ import annotations

from gateway import domain

IDEAS = {
    "round": {"id": "round_1", "partnership": "ka-kr", "name": "Lab 2027"},
    "ideas": [
        {"id": "i1", "city": "karlsruhe", "theme": "ecology-health", "language": "de", "status": "in_project",
         "created_at": "2026-12-01T10:00:00+00:00"},
        {"id": "i2", "city": "krasnodar", "theme": "ecology-health", "language": "ru", "status": "in_project",
         "created_at": "2026-12-01T12:00:00+00:00"},
        {"id": "i3", "city": "karlsruhe", "theme": "leisure-youth-social", "language": "de", "status": "open",
         "created_at": "2026-12-01T13:00:00+00:00"},
        {"id": "i4", "city": "krasnodar", "theme": "leisure-youth-social", "language": "ru", "status": "open",
         "created_at": "2026-12-02T13:00:00+00:00"},
    ],
    "authors_by_city": {"karlsruhe": 2, "krasnodar": 1},
    "registered_by_city": {"karlsruhe": 5, "krasnodar": 4},
}
MATCHING = {"matches_by_status": {"confirmed": 1, "proposed": 1}, "matches_by_kind": {"idea": 2},
            "projects_by_status": {"active": 1},
            "first_proposed_at": {"i1": "2026-12-01T12:00:05+00:00", "i2": "2026-12-01T12:00:05+00:00",
                                  "i3": "2026-12-02T13:00:00+00:00"}}


def test_the_figures_of_a_round_add_up():
    report = domain.round_report(IDEAS, MATCHING)
    assert report["ideas"]["total"] == 4 and report["ideas"]["by_city"] == {"karlsruhe": 2, "krasnodar": 2}
    assert report["ideas"]["by_theme_and_city"] == {"ecology-health": {"karlsruhe": 1, "krasnodar": 1},
                                                    "leisure-youth-social": {"karlsruhe": 1, "krasnodar": 1}}
    assert report["ideas"]["by_language"] == {"de": 2, "ru": 2}
    assert report["matches"] == {"total": 2, "by_status": {"confirmed": 1, "proposed": 1}, "by_kind": {"idea": 2}}
    assert report["projects"] == {"total": 1, "by_status": {"active": 1}}
    # waits: i1 2.0014 h, i2 0.0014 h, i3 24 h; i4 never proposed
    waiting = report["first_proposal"]
    assert (waiting["ideas_proposed"], waiting["ideas_waiting"]) == (3, 1)
    assert (waiting["median_hours"], waiting["p90_hours"], waiting["max_hours"]) == (2.0, 24.0, 24.0)


def test_every_figure_is_a_row_of_the_csv():
    rows = domain.report_rows(domain.round_report(IDEAS, MATCHING))
    assert ("ideas", "total", "", 4) in rows
    assert ("ideas by theme and city", "ecology-health", "krasnodar", 1) in rows
    assert ("matches by status", "confirmed", "", 1) in rows and ("projects by status", "active", "", 1) in rows
    assert ("participants: registered", "karlsruhe", "", 5) in rows
    assert ("first proposal", "ideas_waiting", "", 1) in rows


def test_a_round_without_ideas_has_no_waiting_times():
    report = domain.round_report({**IDEAS, "ideas": []}, {})
    assert report["first_proposal"] == {"ideas_proposed": 0, "ideas_waiting": 0, "median_hours": None,
                                        "p90_hours": None, "max_hours": None}
    assert report["matches"]["total"] == 0 and report["projects"]["total"] == 0
