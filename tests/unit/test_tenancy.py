"""The caller the gateway passes on to the services, in its header."""

from __future__ import annotations

import json
from dataclasses import asdict, fields

from services.tenancy import Caller, PartnershipRef

CALLER = Caller(city="karlsruhe", scopes=("read", "write"), visible_cities=("karlsruhe", "krasnodar"),
                partnerships=(PartnershipRef("ka-kr", ("karlsruhe", "krasnodar"), ("river",)),
                              PartnershipRef("ka-nancy", ("karlsruhe", "nancy"))),
                default_themes=("ecology-health",), key_id="k-1")


def test_a_caller_encodes_as_its_fields_and_decodes_to_itself():
    raw = CALLER.encode()
    assert json.loads(raw) == json.loads(json.dumps(asdict(CALLER))), "every field, as asdict gives them"
    assert set(json.loads(raw)) == {f.name for f in fields(Caller)}
    assert Caller.decode(raw) == CALLER
    admin = Caller(city=None, scopes=("admin",))
    assert Caller.decode(admin.encode()) == admin
