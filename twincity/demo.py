"""The demo lab "Twin City Lab Karlsruhe–Krasnodar", loaded through the public API like any client would."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from werkzeug.test import Client

CITIES = [
    {"key": "karlsruhe", "name": "Karlsruhe", "country": "DE", "language": "de", "names": {"ru": "Карлсруэ"},
     "timezone": "Europe/Berlin"},
    {"key": "krasnodar", "name": "Краснодар", "country": "RU", "language": "ru",
     "names": {"de": "Krasnodar", "en": "Krasnodar"}, "timezone": "Europe/Moscow"},
]
PARTNERSHIP = {"cities": ["karlsruhe", "krasnodar"], "name": "Twin City Lab Karlsruhe–Krasnodar"}

PARTICIPANTS = {
    "karlsruhe": [
        {"name": "Lena Hoffmann", "email": "lena.hoffmann@example.org", "language": "de", "languages": ["de", "en"],
         "interests": "Gründerszene, Start-ups, Digitalisierung, Netzwerke zwischen Städten"},
        {"name": "Jonas Weber", "email": "jonas.weber@example.org", "language": "de", "languages": ["de", "ru"],
         "interests": "Stadtgrün, Klimaschutz, Urban Gardening, Jugendarbeit"},
        {"name": "Miriam Okafor", "email": "miriam.okafor@example.org", "language": "en", "languages": ["en", "de"],
         "interests": "Diversity, LGBTIQ*, social media, community events"},
    ],
    "krasnodar": [
        {"name": "Анна Смирнова", "email": "anna.smirnova@example.org", "language": "ru", "languages": ["ru", "en"],
         "interests": "Экология, апсайклинг, молодёжные проекты, фестивали"},
        {"name": "Дмитрий Кузнецов", "email": "dmitry.kuznetsov@example.org", "language": "ru",
         "languages": ["ru", "de"], "interests": "IT, стартапы, хакатоны, сотрудничество университетов"},
    ],
}

# (city, author index, idea). Modelled on the first lab's kickoff workshops (2021).
IDEAS: list[tuple[str, int, dict[str, Any]]] = [
    ("karlsruhe", 0, {
        "title": "Start-up-Netzwerk Karlsruhe–Krasnodar",
        "description": "Gründerinnen und Gründer beider Städte lernen sich in regelmäßigen Online-Treffen kennen, "
                       "tauschen Erfahrungen aus und finden Partner für gemeinsame Geschäftsideen.",
        "theme": "innovation-economy", "tags": ["startups", "networking", "digital"],
        "seeks": ["Gründerinnen und Gründer aus Krasnodar"], "offers": ["Kontakte zum Karlsruher Gründerzentrum"]}),
    ("karlsruhe", 1, {
        "title": "Hochschulkooperation zwischen KIT und Kuban-Universität",
        "description": "Gemeinsame Seminare, Austauschsemester und Forschungsprojekte von Studierenden und "
                       "Lehrenden der Universitäten beider Städte.",
        "theme": "innovation-economy", "tags": ["university", "students", "research"],
        "seeks": ["Partnerfakultät in Krasnodar"], "offers": ["Gastvorlesungen", "Plätze im Austauschprogramm"]}),
    ("karlsruhe", 0, {
        "title": "Fachkräfteaustausch in Handwerk und Pflege",
        "description": "Fachkräfte aus Karlsruhe und Krasnodar hospitieren für einige Wochen in Betrieben der "
                       "Partnerstadt und lernen voneinander.",
        "theme": "innovation-economy", "tags": ["skilled-workers", "exchange", "jobs"],
        "seeks": ["Betriebe in Krasnodar, die Gäste aufnehmen"], "offers": ["Hospitationsplätze in Karlsruhe"]}),
    ("karlsruhe", 1, {
        "title": "Stadtbegrünung und Klimaanpassung",
        "description": "Urban Gardening, begrünte Dächer und Bäume gegen die Sommerhitze: Nachbarschaften beider "
                       "Städte pflanzen gemeinsam und teilen, was gegen Hitze und Trockenheit hilft.",
        "theme": "ecology-health", "tags": ["urban-greening", "climate", "gardening"],
        "seeks": ["Erfahrungen mit Hitze und Trockenheit"], "offers": ["Saatgut", "Know-how zu Gemeinschaftsgärten"]}),
    ("karlsruhe", 2, {
        "title": "LGBTIQ*-Austausch der Partnerstädte",
        "description": "Begegnungen und Online-Gespräche von queeren Menschen und Initiativen beider Städte, "
                       "für Sichtbarkeit, Akzeptanz und gegenseitige Unterstützung.",
        "theme": "leisure-youth-social", "tags": ["lgbtiq", "diversity", "tolerance"],
        "seeks": ["Initiativen für Vielfalt in Krasnodar"], "offers": ["Erfahrung mit dem Karlsruher CSD"]}),
    ("karlsruhe", 0, {
        "title": "Twin-City-Hackathon",
        "description": "Ein Wochenende lang entwickeln gemischte Teams aus beiden Städten digitale Lösungen für "
                       "städtische Probleme, vor Ort und online.",
        "theme": "city-admin-development", "tags": ["hackathon", "digital", "open-data"],
        "seeks": ["Entwicklerinnen und Entwickler aus Krasnodar"], "offers": ["Räume", "Offene Daten der Stadt"]}),
    ("karlsruhe", 2, {
        "title": "Social-Media-Kanal der Städtepartnerschaft",
        "description": "Ein gemeinsamer zweisprachiger Kanal, auf dem Menschen aus beiden Städten ihren Alltag, "
                       "Projekte und Veranstaltungen zeigen.",
        "theme": "leisure-youth-social", "tags": ["social-media", "youth", "communication"],
        "seeks": ["Redakteurinnen und Redakteure in Krasnodar"], "offers": ["Konzept und Moderation"]}),
    ("krasnodar", 0, {
        "title": "Апсайклинг: вторая жизнь вещей",
        "description": "Мастерские, где молодёжь из Краснодара и Карлсруэ превращает старые вещи и отходы в "
                       "полезные и красивые предметы, и вместе учится бережному отношению к природе.",
        "theme": "ecology-health", "tags": ["upcycling", "ecology", "youth"],
        "seeks": ["Опыт сортировки и переработки отходов"], "offers": ["Мастерская", "Ведущие мастер-классов"]}),
    ("krasnodar", 0, {
        "title": "Фестиваль молодёжной культуры",
        "description": "Музыка, уличное искусство и танцы: молодые артисты из обоих городов выступают вместе "
                       "на летнем фестивале в Краснодаре.",
        "theme": "leisure-youth-social", "tags": ["festival", "youth", "music"],
        "seeks": ["Музыканты и художники из Карлсруэ"], "offers": ["Площадка фестиваля", "Проживание для гостей"]}),
    ("krasnodar", 1, {
        "title": "Онлайн-нетворкинг для молодых предпринимателей",
        "description": "Регулярные онлайн-встречи основателей стартапов из Краснодара и Карлсруэ: обмен опытом, "
                       "поиск партнёров и совместные бизнес-идеи.",
        "theme": "innovation-economy", "tags": ["startups", "networking", "online"],
        "seeks": ["Стартапы из Карлсруэ"], "offers": ["Контакты в бизнес-инкубаторе Краснодара"]}),
    ("krasnodar", 1, {
        "title": "Совместный IT-хакатон городов-побратимов",
        "description": "Команды программистов и дизайнеров из двух городов за выходные создают цифровые решения "
                       "для городской среды.",
        "theme": "city-admin-development", "tags": ["hackathon", "it", "digital"],
        "seeks": ["Открытые данные и задачи от города Карлсруэ"], "offers": ["Программисты", "Менторы"]}),
    ("krasnodar", 0, {
        "title": "Школа толерантности",
        "description": "Встречи и дискуссии молодых людей из обоих городов о многообразии, уважении и жизни "
                       "без дискриминации.",
        "theme": "leisure-youth-social", "tags": ["tolerance", "diversity", "dialogue"],
        "seeks": ["Партнёрские организации в Карлсруэ"], "offers": ["Модераторы", "Помещение для встреч"]}),
]


class SeedError(RuntimeError):
    pass


@dataclass
class DemoLab:
    partnership: str
    city_keys: dict[str, str]
    participants: dict[str, list[str]]
    ideas: list[str]

    def sign_ins(self) -> list[tuple[str, str, str]]:
        """(city, who, e-mail address) of every demo participant, in the order of PARTICIPANTS."""
        return [(city, person["name"], person["email"]) for city, persons in PARTICIPANTS.items()
                for person in persons]


def seed(gateway_app: Any, admin_key: str) -> DemoLab:
    """Create the demo lab through the API (so it takes the same path as any client)."""
    client = Client(gateway_app, use_cookies=False)

    def call(method: str, path: str, key: str, body: dict[str, Any]) -> dict[str, Any]:
        response = client.open(f"/api/v1{path}", method=method, json=body,
                               headers={"Authorization": f"Bearer {key}"})
        if response.status_code >= 300:
            raise SeedError(f"{method} {path} answered {response.status_code}: {response.get_data(as_text=True)}")
        return json.loads(response.get_data())

    for city in CITIES:
        call("POST", "/cities", admin_key, city)
    partnership = call("POST", "/partnerships", admin_key, PARTNERSHIP)["id"]
    city_keys = {c["key"]: call("POST", "/api-keys", admin_key, {"city": c["key"], "scopes": ["read", "write"],
                                                                 "label": "demo"})["key"]
                 for c in CITIES}
    people = {city: [call("POST", "/participants", city_keys[city], p)["id"] for p in persons]
              for city, persons in PARTICIPANTS.items()}
    ideas = [call("POST", "/ideas", city_keys[city], {**idea, "author_id": people[city][author]})["id"]
             for city, author, idea in IDEAS]
    return DemoLab(partnership, city_keys, people, ideas)
