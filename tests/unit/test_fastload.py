"""The quick loader answers as marshmallow does, or leaves the answer to marshmallow: every schema, random inputs."""

from __future__ import annotations

import random
import uuid
from typing import Any

import pytest
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

import gateway.schemas
import ideas.schemas
import matching.schemas
import notify.schemas
from services import contract, fastload
from services.contract import schema_instance

MODULES = (contract, ideas.schemas, matching.schemas, notify.schemas, gateway.schemas)
SCHEMAS = sorted({value for module in MODULES for value in vars(module).values()
                  if isinstance(value, type) and issubclass(value, Schema) and value.__module__ == module.__name__},
                 key=lambda s: (s.__module__, s.__name__))

STRINGS = ["", "a", "karlsruhe", "Краснодар", "x" * 101, "x" * 301, str(uuid.UUID(int=7)), "DE", "de", "ru",
           "2026-11-26T06:00:00+00:00", "2026-11-26T06:00:00", "a@example.org", "not an email", "open", "idea",
           "email", "inbox", "immediate", "match.proposed"]
WRONG = [None, 1, 1.5, True, b"bytes", ["a"], {"a": 1}, ("a",)]
INTEGERS = [1, 0, -1, 5, 2, 10**30, 2.0, 2.5, "3", True, None]
FLOATS = [0.5, 0.0, 1, 0, 1.0, -0.1, 2.0, float("nan"), float("inf"), "0.5", True, None, 10**400]
BOOLEANS = [True, False, 1, 0, "true", None]


def typed(value: Any) -> Any:
    """A value with the type of each part spelled out (1 == 1.0 == True is not enough here)."""
    if isinstance(value, dict):
        return type(value), [(typed(k), typed(v)) for k, v in value.items()]
    if isinstance(value, list | tuple):
        return type(value), [typed(v) for v in value]
    if isinstance(value, float) and value != value:
        return float, "nan"
    return type(value), value


def value_for(field: fields.Field, rng: random.Random, depth: int = 0) -> Any:
    """Mostly values the field takes (but for validators, met by luck), now and then a wrong one."""
    if rng.random() < 0.03:
        return rng.choice(WRONG)
    if isinstance(field, fields.Nested):
        return data_for(field.schema, rng, depth + 1) if depth < 3 else {}
    if isinstance(field, fields.List):
        sizes = [v.equal for v in field.validators if isinstance(v, validate.Length) and v.equal is not None]
        size = sizes[0] if sizes and rng.random() < 0.9 else rng.randint(0, 3)
        items = [value_for(field.inner, rng, depth + 1) for _ in range(size)]
        return tuple(items) if rng.random() < 0.05 else items
    if isinstance(field, fields.Dict):
        out = {}
        for _ in range(rng.randint(0, 3)):
            key = value_for(field.key_field, rng, depth + 1) if field.key_field else rng.choice(STRINGS)
            if isinstance(key, str | int | float | bool | type(None)):
                out[key] = value_for(field.value_field, rng, depth + 1) if field.value_field else rng.choice(
                    STRINGS + INTEGERS)
        return out
    pool = (BOOLEANS if isinstance(field, fields.Boolean) else FLOATS if isinstance(field, fields.Float)
            else INTEGERS if isinstance(field, fields.Integer)
            else STRINGS + [c for v in field.validators if isinstance(v, validate.OneOf) for c in v.choices])
    good = [value for value in pool if takes(field, value)]
    return rng.choice(good if good and rng.random() < 0.85 else pool)


def takes(field: fields.Field, value: Any) -> bool:
    try:
        field.deserialize(value)
    except ValidationError:
        return False
    return True


def data_for(schema: Schema, rng: random.Random, depth: int = 0) -> dict[str, Any]:
    data = {name: value_for(field, rng, depth) for name, field in schema.load_fields.items()
            if rng.random() < (0.97 if field.required else 0.7)}
    if rng.random() < 0.1:
        data["unknown_field"] = rng.choice(STRINGS)
    return data


def outcome(load, data):
    try:
        return "ok", typed(load(data))
    except ValidationError as exc:
        return "invalid", exc.messages


@pytest.mark.parametrize("schema_class", SCHEMAS, ids=lambda s: f"{s.__module__}.{s.__name__}")
def test_the_quick_loader_answers_as_marshmallow(schema_class: type[Schema]) -> None:
    schema = schema_instance(schema_class)
    quick = fastload.loader(schema)
    rng = random.Random(schema_class.__name__)
    answered = 0
    for _ in range(400):
        data = data_for(schema, rng)
        expected = outcome(schema.load, data)
        assert outcome(lambda d: fastload.load(schema, d), data) == expected, data
        if quick is None:
            continue
        try:
            mine = quick(data)
        except Exception:  # noqa: BLE001 - left to marshmallow, which was compared above
            continue
        answered += 1
        assert expected == ("ok", typed(mine)), data
    if quick is not None and schema.load_fields:
        assert answered >= 20, f"the quick path answered only {answered} of 400 inputs: the test would prove little"


def test_the_platforms_event_schemas_take_the_quick_path() -> None:
    for spec in contract.EVENT_TYPES.values():
        assert fastload.loader(schema_instance(spec.schema)) is not None, spec.type
    assert fastload.loader(schema_instance(contract.EnvelopeSchema)) is not None


def test_what_the_quick_path_does_not_know_goes_to_marshmallow() -> None:
    class Hooked(Schema):
        name = fields.Str(required=True)

        @validates_schema(pass_original=True)
        def _check(self, data, original, **_):
            if original.get("name") == "bad":
                raise ValidationError("bad name", "name")

    class Keyed(Schema):
        name = fields.Str(data_key="Name")

    class Dated(Schema):
        at = fields.DateTime()

    for schema_class in (Hooked, Keyed, Dated):
        assert fastload.loader(schema_class()) is None
    with pytest.raises(ValidationError) as raised:
        fastload.load(Hooked(), {"name": "bad"})
    assert raised.value.messages == {"name": ["bad name"]}
    assert fastload.load(Keyed(), {"Name": "x"}) == {"name": "x"}


def test_a_schema_validator_that_fails_gives_marshmallows_error() -> None:
    schema = schema_instance(contract.MatchProposedV1)
    side = {"city": "karlsruhe", "idea_id": "i1"}
    payload = {"match_id": "m", "partnership": "p", "kind": "idea", "score": 0.9, "sides": [side, side],
               "version": 1}
    with pytest.raises(ValidationError) as raised:
        fastload.load(schema, payload)
    assert raised.value.messages == {"sides": ["a match pairs two different cities"]}
    good = fastload.load(schema, {**payload, "sides": [side, {**side, "city": "krasnodar"}], "score": 1})
    assert typed(good["score"]) == (float, 1.0) and good["reasons"] == [] and good["expires_at"] is None
