"""The themes every partnership starts with (those of the first Twin City Lab), labelled de / ru / en."""

from __future__ import annotations

DEFAULT_THEMES: dict[str, dict[str, str]] = {
    "ecology-health": {
        "de": "Ökologie & Gesundheit", "ru": "Экология и здоровье", "en": "Ecology & health",
    },
    "innovation-economy": {
        "de": "Innovation & Wirtschaft", "ru": "Инновации и экономика", "en": "Innovation & economy",
    },
    "leisure-youth-social": {
        "de": "Freizeit, Jugend & Soziales", "ru": "Досуг, молодёжь и социальная сфера",
        "en": "Leisure, youth & social",
    },
    "city-admin-development": {
        "de": "Stadtverwaltung & -entwicklung", "ru": "Городское управление и развитие",
        "en": "City administration & development",
    },
}
