"""marshmallow's `Schema.load`, quicker for the plain data the services pass around; marshmallow decides the rest.

Every event is checked twice (by its producer when it enters the outbox, by each consumer when it arrives) and
every request body once, with marshmallow, which spends ~0.3 ms on a `match.proposed` payload: per field a
closure, an error store, a validator chain. Under load that was a sixth of the matching worker's Python time and
a fifth of notify's.

`loader(schema)` reads a schema once and returns a function that loads the *canonical* inputs of that schema
(a dict of plain str, int, float, bool, list and dict values) the way marshmallow does: the same fields read, the
same defaults filled, the same field and schema validators run, the same output, key for key and type for type.
Anything else (a value of another type marshmallow would convert or reject, an unknown key a schema refuses, a
validator that fails, a field kind or hook not understood here) raises `Fallback`, and `load` hands that input
to marshmallow itself, whose answer (the result or its ValidationError, with its messages) is the answer. So
this path only ever answers where it knows it agrees with marshmallow; tests/unit/test_fastload.py holds it to
marshmallow's results on random and mutated inputs of every schema the platform loads.

Understood: String, Email, Integer (strict or not), Float, Boolean, Dict (with or without key and value fields),
List, Nested (of one schema); required, load_default, allow_none; field validators; `unknown` EXCLUDE or RAISE;
`validates_schema` hooks (not pass_collection, not pass_original). A schema with anything else (pre/post-load
hooks, `validates` hooks, data_key, attribute, partial, many, only/exclude, INCLUDE) is loaded by marshmallow.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

from marshmallow import EXCLUDE, RAISE, Schema, fields, missing
from marshmallow.decorators import POST_LOAD, PRE_LOAD, VALIDATES, VALIDATES_SCHEMA

Convert = Callable[[Any], Any]


class Fallback(Exception):  # noqa: N818 - a signal, not an error
    """The input is not one this path answers for: marshmallow loads it."""


def load(schema: Schema, data: Any) -> Any:
    """`schema.load(data)`, through the quick path where it applies."""
    quick = loader(schema)
    if quick is not None:
        try:
            return quick(data)
        except Exception:  # noqa: BLE001 - Fallback, a failing validator, anything: marshmallow has the answer
            pass
    return schema.load(data)


@functools.cache
def loader(schema: Schema) -> Callable[[Any], dict[str, Any]] | None:
    """The quick loader of one schema instance (shared instances: services.contract.schema_instance), or None."""
    return _compile(schema)


def _compile(schema: Schema) -> Callable[[Any], dict[str, Any]] | None:
    hooks = schema._hooks
    if hooks[PRE_LOAD] or hooks[POST_LOAD] or hooks[VALIDATES] or schema.many or schema.partial:
        return None
    if schema.unknown not in (EXCLUDE, RAISE) or schema.dict_class is not dict:
        return None
    checks = []
    for attr_name, pass_collection, options in hooks[VALIDATES_SCHEMA]:
        if pass_collection or options.get("pass_original"):
            return None
        checks.append(getattr(schema, attr_name))
    plan = []
    for name, field in schema.load_fields.items():
        if field.data_key not in (None, name) or field.attribute not in (None, name):
            return None
        convert = _field(field)
        if convert is None:
            return None
        plan.append((name, convert, field.required, field.load_default))
    known = frozenset(name for name, *_ in plan)
    refuse_unknown = schema.unknown == RAISE
    unknown = schema.unknown

    def load_quick(data: Any) -> dict[str, Any]:
        if type(data) is not dict or (refuse_unknown and not known.issuperset(data)):
            raise Fallback
        out = {}
        for name, convert, required, default in plan:
            value = data.get(name, missing)
            if value is missing:
                if required:
                    raise Fallback
                if default is not missing:
                    out[name] = default() if callable(default) else default
            else:
                out[name] = convert(value)
        for check in checks:
            check(out, partial=None, many=False, unknown=unknown)
        return out

    return load_quick


def _field(field: fields.Field) -> Convert | None:
    """A function doing `field.deserialize(value)` for a present value, raising Fallback where it can't."""
    if field.pre_load or field.post_load:
        return None
    kind = type(field)
    typed: Convert | None
    if kind in (fields.String, fields.Email):
        typed = _string
    elif kind is fields.Integer:
        typed = _integer
    elif kind is fields.Float:
        typed = _float if not field.allow_nan else None
    elif kind is fields.Boolean:
        typed = _boolean if (True in field.truthy and False in field.falsy and True not in field.falsy
                             and False not in field.truthy) else None
    elif kind is fields.Dict:
        typed = _mapping(field)
    elif kind is fields.List:
        inner = _field(field.inner)
        typed = None if inner is None else functools.partial(_list, inner)
    elif kind is fields.Nested:
        typed = _nested(field)
    else:
        typed = None
    if typed is None:
        return None
    validators = tuple(field.validators)
    allow_none = field.allow_none

    def convert(value: Any) -> Any:
        if value is None:
            if allow_none:
                return None
            raise Fallback
        out = typed(value)
        for validate in validators:
            if validate(out) is False:
                raise Fallback
        return out

    return convert


def _string(value: Any) -> str:
    if type(value) is not str:
        raise Fallback  # bytes are decoded, anything else refused: marshmallow's part
    return value


def _integer(value: Any) -> int:
    if type(value) is not int:
        raise Fallback  # floats, strings, bools: converted or refused by marshmallow
    return value


def _float(value: Any) -> float:
    if type(value) is float:
        if not math.isfinite(value):
            raise Fallback
        return value
    if type(value) is int:
        return float(value)  # OverflowError for a huge int: marshmallow says "too large"
    raise Fallback


def _boolean(value: Any) -> bool:
    if type(value) is not bool:
        raise Fallback
    return value


def _list(inner: Convert, value: Any) -> list[Any]:
    if type(value) is not list:
        raise Fallback  # tuples and other collections: marshmallow's part
    return [inner(each) for each in value]


def _mapping(field: fields.Dict) -> Convert | None:
    keys = None if field.key_field is None else _field(field.key_field)
    values = None if field.value_field is None else _field(field.value_field)
    if (field.key_field is not None and keys is None) or (field.value_field is not None and values is None):
        return None

    def mapping(value: Any) -> dict[Any, Any]:
        if type(value) is not dict:
            raise Fallback
        if keys is None and values is None:
            return dict(value)
        out = {}
        for key, each in value.items():
            out[key if keys is None else keys(key)] = each if values is None else values(each)
        return out

    return mapping


def _nested(field: fields.Nested) -> Convert | None:
    nested = field.schema
    if field.many or field.only or field.exclude or not isinstance(nested, Schema):
        return None
    if field.unknown is not None and field.unknown != nested.unknown:
        return None
    quick = loader(nested)
    if quick is None:
        return None

    def load_nested(value: Any) -> dict[str, Any]:
        if type(value) is not dict:
            raise Fallback
        return quick(value)

    return load_nested
