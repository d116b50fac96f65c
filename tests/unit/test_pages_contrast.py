"""The pages' colours meet WCAG 2.2: text ≥ 4.5:1 against its background (the stylesheet aims at 7:1 for body text),
and the focus ring ≥ 3:1 against every background it is drawn on (white pages, grey panels, the blue header)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

CSS = re.sub(r"/\*.*?\*/", "", (Path(__file__).resolve().parents[2] / "gateway" / "pages" / "static" / "pages.css")
             .read_text(), flags=re.S)


def variables() -> dict[str, str]:
    root = re.search(r":root\s*\{([^}]*)\}", CSS).group(1)
    return dict(re.findall(r"--([\w-]+):\s*(#[0-9a-fA-F]{3,6})", root))


def color(value: str) -> str:
    value = value.strip()
    found = re.fullmatch(r"var\(--([\w-]+)\)", value)
    return variables()[found.group(1)] if found else value


def rule(selector: str) -> str:
    """The declarations of the rule with exactly this selector list."""
    for selectors, body in re.findall(r"([^{}]+)\{([^}]*)\}", CSS):
        if [s.strip() for s in selectors.split(",")] == [s.strip() for s in selector.split(",")]:
            return body
    raise AssertionError(f"no rule {selector!r} in pages.css")


def prop(selector: str, name: str) -> str:
    found = re.search(rf"(?:^|;)\s*{re.escape(name)}\s*:\s*([^;]+)", rule(selector))
    assert found, f"{selector} has no {name}"
    return found.group(1).strip()


def luminance(hex_color: str) -> float:
    h = hex_color.lstrip("#")
    if len(h) == 3:
        h = "".join(c * 2 for c in h)

    def channel(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(int(h[i:i + 2], 16) / 255) for i in (0, 2, 4))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    high, low = sorted((luminance(color(a)), luminance(color(b))), reverse=True)
    return (high + 0.05) / (low + 0.05)


TEXT = [  # (what, text colour, background)
    ("body text", "var(--ink)", "var(--bg)"),
    ("muted text (meta, hints, footer)", "var(--muted)", "var(--bg)"),
    ("muted text on panels", "var(--muted)", "var(--soft)"),
    ("links", "var(--brand)", "var(--bg)"),
    ("links on panels", "var(--brand)", "var(--soft)"),
    ("header and primary buttons", "#ffffff", "var(--brand)"),
    ("main navigation", "#ffffff", "var(--brand-dark)"),
    ("current language", "var(--brand)", "#ffffff"),
    ("errors", "var(--bad)", "var(--bg)"),
    ("row errors in the import preview", "var(--bad)", "#fbeeee"),
    ("confirmed status", "var(--ok)", "var(--bg)"),
    ("flash messages", "var(--ink)", "#edf6ee"),
    ("matrix: confirmed", "var(--ink)", "#c9e8cb"),
    ("matrix: accepted", "var(--ink)", "#fff0c2"),
    ("matrix: proposed", "var(--ink)", "#e3eefa"),
    ("development panel", "var(--ink)", "#fff7e0"),
]


@pytest.mark.parametrize(("what", "fg", "bg"), TEXT, ids=[t[0] for t in TEXT])
def test_text_has_enough_contrast(what, fg, bg):
    assert contrast(fg, bg) >= 4.5, f"{what}: {contrast(fg, bg):.2f}:1"


def test_the_colours_the_table_names_are_the_stylesheet_s():
    assert color(prop("html", "color")) == variables()["ink"] and color(prop("a", "color")) == variables()["brand"]
    assert prop("header.top", "background") == "var(--brand)"
    assert prop("button.primary, .button.primary", "background") == "var(--brand)"


def test_the_focus_ring_is_visible_on_every_background():
    ring = prop(":focus-visible", "outline").split()[-1]
    for background in ("var(--bg)", "var(--soft)"):
        assert contrast(ring, background) >= 3, f"focus ring on {background}: {contrast(ring, background):.2f}:1"
    # In the blue header (language switch, navigation, sign-out) and around the skip link the ring is another colour.
    header_ring = prop("header.top :focus-visible, .skip:focus-visible", "outline-color")
    for background in ("var(--brand)", "var(--brand-dark)", "var(--ink)"):
        assert contrast(header_ring, background) >= 3, f"{background}: {contrast(header_ring, background):.2f}:1"
