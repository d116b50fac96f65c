"""The README's first ten minutes, as written: its texts and commands do what it says they do.

The German and the Russian idea of the guide are read from README.md and submitted in the demo lab as Lena and
Anna: they are matched with each other (not only with something), both accept, a project of the two forms, and a
message of Lena's reaches Anna's inbox in Russian. The three curl lines that add a city, a partnership and a key
are run as written against the same gateway. Every relative link of README.md and docs/ leads to a file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from tests.conftest import wait_for
from tests.e2e.conftest import ADMIN, Api, running_platform
from twincity.demo import PARTICIPANTS, DemoLab, seed

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def demo() -> Iterator[tuple[Api, DemoLab]]:
    with running_platform("memory://") as api:
        lab = seed(api.platform.gateway, ADMIN)
        api.settle()
        yield api, lab


def cards() -> list[dict[str, str]]:
    """The ```text blocks of the guide that are idea cards (Title:, Theme:, Description:)."""
    found = []
    for block in re.findall(r"```text\n(.*?)```", README, re.S):
        fields = dict(re.findall(r"^(Title|Theme|Description):\s+(.+)$", block, re.M))
        if fields:
            found.append(fields)
    return found


def test_the_readme_fits_on_a_few_screens_and_starts_with_the_two_commands():
    lines = README.splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; the rest belongs in docs/"
    first_block = README.split("```sh\n", 1)[1].split("```", 1)[0]
    assert [line.split()[0] for line in first_block.splitlines()] == ["scripts/dev", "scripts/test"]


def test_the_readme_names_every_demo_sign_in():
    for persons in PARTICIPANTS.values():
        for person in persons:
            assert person["email"] in README, person["email"]


def test_the_german_and_the_russian_card_of_the_guide_are_matched_accepted_and_become_a_project(demo):
    api, lab = demo
    german, russian = cards()
    k, kr = lab.city_keys["karlsruhe"], lab.city_keys["krasnodar"]
    lena, anna = lab.participants["karlsruhe"][0], lab.participants["krasnodar"][0]
    themes = {label: t["key"] for t in api.ok("GET", "/themes", k)["items"] for label in t["labels"].values()}

    def submit(card: dict[str, str], key: str, author: str) -> dict[str, Any]:
        return api.ok("POST", "/ideas", key, {"title": card["Title"], "theme": themes[card["Theme"]],
                                              "description": card["Description"], "author_id": author})

    de = submit(german, k, lena)
    api.settle()
    ru = submit(russian, kr, anna)
    assert (de["language"], ru["language"]) == ("de", "ru")

    def match_of_the_two() -> dict[str, Any] | None:
        for match in api.ok("GET", f"/ideas/{ru['id']}/matches", kr)["items"]:
            if {side["idea_id"] for side in match["sides"]} == {de["id"], ru["id"]}:
                return match
        return None

    match = wait_for(match_of_the_two, 30, 0.05, message="the guide's two cards matched with each other")
    assert match["status"] == "proposed" and match["reasons"], match
    best = api.ok("GET", f"/ideas/{ru['id']}/candidates?limit=2", kr)["items"]
    assert best[0]["idea"]["idea_id"] == de["id"], "Lena's card is Anna's best candidate"

    api.ok("POST", f"/matches/{match['id']}/accept", kr, {"participant_id": anna})
    confirmed = api.ok("POST", f"/matches/{match['id']}/accept", k, {"participant_id": lena})
    assert confirmed["status"] == "confirmed"

    def project() -> dict[str, Any] | None:
        return next((p for p in api.ok("GET", "/projects", k)["items"] if p.get("match_id") == match["id"]), None)

    formed = wait_for(project, 30, 0.05, message="the project of the confirmed match")
    members = {m["participant_id"] for m in api.ok("GET", f"/projects/{formed['id']}", k)["members"]}
    assert {lena, anna} <= members
    api.ok("POST", f"/projects/{formed['id']}/messages", k, {"author_id": lena, "text": "Hallo Anna!"})

    def anna_told() -> list[dict[str, Any]]:
        return [n for n in api.ok("GET", f"/participants/{anna}/notifications", kr)["items"]
                if "Hallo Anna!" in json.dumps(n, ensure_ascii=False)]

    [told] = wait_for(anna_told, 30, 0.05, message="Anna's inbox has Lena's message")
    assert re.search("[а-яА-Я]", told["title"]), f"Anna is told in Russian: {told['title']}"


def test_the_demo_start_up_network_is_matched_as_the_guide_says(demo):
    api, lab = demo
    k = lab.city_keys["karlsruhe"]
    ideas = {i["title"]: i["id"] for i in api.ok("GET", "/ideas?limit=100", k)["items"]}
    flat = " ".join(README.split())
    assert "start-up network" in flat and "online networking for young entrepreneurs" in flat

    def titles() -> set[str]:
        matches = api.ok("GET", f"/ideas/{ideas['Start-up-Netzwerk Karlsruhe–Krasnodar']}/matches", k)["items"]
        other = {side["idea_id"] for m in matches for side in m["sides"]}
        return {title for title, idea in ideas.items() if idea in other}

    wait_for(lambda: "Онлайн-нетворкинг для молодых предпринимателей" in titles(), 30, 0.05,
             message="the demo's start-up network matched with Krasnodar's online networking")
    # Lena sees that pair once: not again as an idea for her interests (start-ups), since her own idea is in it.
    lena = lab.participants["karlsruhe"][0]
    networking = api.ok("GET", f"/ideas/{ideas['Онлайн-нетворкинг для молодых предпринимателей']}/matches", k)["items"]
    assert not [m for m in networking if m["kind"] == "interest"
                and any(side.get("participant_id") == lena for side in m["sides"])], networking


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_three_curl_lines_add_a_city_a_partnership_and_a_key(demo):
    """Run as written, with curl, against the gateway served on a port of its own."""
    api, _lab = demo
    lines = [line for line in README.splitlines() if line.startswith("curl -s http://127.0.0.1:8080/api/v1/")]
    assert len(lines) == 3, lines
    server = make_server("127.0.0.1", 0, api.platform.gateway, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        answers = [subprocess.run(["bash", "-c", line.replace("127.0.0.1:8080", f"127.0.0.1:{server.server_port}")],
                                  env={"PATH": os.environ["PATH"], "ADMIN": ADMIN}, capture_output=True, text=True,
                                  timeout=20, check=True).stdout for line in lines]
    finally:
        server.shutdown()
    city, partnership, key = (json.loads(answer) for answer in answers)
    assert city["key"] == "nancy" and partnership["cities"] == ["karlsruhe", "nancy"], answers
    assert key["city"] == "nancy" and key["key"].startswith("tcl_")
    assert api.ok("GET", "/partnerships", key["key"])["items"][0]["id"] == partnership["id"]


LINK = re.compile(r"\]\(((?!https?:|mailto:|#)[^)\s]+)\)")


@pytest.mark.parametrize("page", ["README.md", *sorted(p.relative_to(ROOT).as_posix()
                                                       for p in (ROOT / "docs").glob("*.md"))])
def test_every_relative_link_leads_to_a_file_and_its_heading(page: str):
    source = ROOT / page
    broken = []
    for target in LINK.findall(source.read_text(encoding="utf-8")):
        path, _, anchor = target.partition("#")
        linked = source.parent / path if path else source
        if not linked.exists():
            broken.append(target)
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target} (no such heading)")
    assert not broken, f"{page} links to what is not there: {broken}"


def anchors(page: Path) -> set[str]:
    """The ids GitHub gives a Markdown file's headings: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+\s+(.+?)\s*$", page.read_text(encoding="utf-8"), re.M)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}
