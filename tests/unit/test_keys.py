"""API keys: shown once, stored hashed, scoped."""

import pytest

from gateway.keys import KeyStore, hash_secret
from services import store


@pytest.fixture
def keys():
    url = "mongomock://keys-unit"
    yield KeyStore(store.client_for(url)["gw"])
    store.forget(url)


def test_a_key_is_stored_only_as_its_hash(keys):
    key, secret = keys.create(["read", "write"], city="karlsruhe")
    doc = keys.collection.find_one({"_id": key.id})
    assert secret.startswith("tcl_") and secret not in str(doc) and doc["hash"] == hash_secret(secret)
    assert keys.authenticate(secret) == key and key.allows("write") and not key.allows("admin")


def test_wrong_and_empty_secrets_do_not_authenticate(keys):
    keys.create(["read"], city="karlsruhe")
    assert keys.authenticate("tcl_guess") is None and keys.authenticate("") is None


def test_admin_key_from_the_environment_is_idempotent(keys):
    a = keys.ensure("tcl_operator-chosen", ["admin"])
    b = keys.ensure("tcl_operator-chosen", ["admin"])
    assert a == b and a.admin and a.allows("write") and keys.collection.count_documents({}) == 1


@pytest.mark.parametrize(("scopes", "city"), [([], "k"), (["root"], "k"), (["read"], None), (["admin"], "k"),
                                             (["read", "admin"], "k")])
def test_bad_scopes_are_refused(keys, scopes, city):
    with pytest.raises(ValueError):
        keys.create(scopes, city=city)


def test_a_city_key_stored_with_the_admin_scope_is_no_admin(keys):
    """Keys made before a city + admin key was refused: the city's scopes only, never every city's."""
    key, secret = keys.create(["read", "write"], city="karlsruhe")
    keys.collection.update_one({"_id": key.id}, {"$set": {"scopes": ["admin", "read"]}})
    found = keys.authenticate(secret)
    assert found.scopes == ("read",) and not found.admin and not found.allows("admin") and not found.allows("write")
    assert keys.active(key.id) == found
