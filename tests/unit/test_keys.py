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


@pytest.mark.parametrize(("scopes", "city"), [([], "k"), (["root"], "k"), (["read"], None)])
def test_bad_scopes_are_refused(keys, scopes, city):
    with pytest.raises(ValueError):
        keys.create(scopes, city=city)
