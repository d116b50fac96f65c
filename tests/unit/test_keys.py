"""API keys: shown once, stored hashed, scoped."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from gateway import domain
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
def test_bad_scopes_are_refused(scopes, city):
    with pytest.raises(domain.Invalid) as refused:
        domain.new_key_terms(scopes, city, None, datetime.now(UTC))
    assert refused.value.field == "scopes"


def test_a_city_key_stored_with_the_admin_scope_is_no_admin(keys):
    """Keys made before a city + admin key was refused: the city's scopes only, never every city's."""
    key, secret = keys.create(["read", "write"], city="karlsruhe")
    keys.collection.update_one({"_id": key.id}, {"$set": {"scopes": ["admin", "read"]}})
    found = keys.authenticate(secret)
    assert found.scopes == ("read",) and not found.admin and not found.allows("admin") and not found.allows("write")
    assert keys.active(key.id) == found


def test_two_workers_making_the_configured_key_at_once_both_start(keys, monkeypatch):
    """Two gunicorn workers (or replicas) on a fresh store: both look, find nothing, and insert; one insert meets
    the other's key. Before: DuplicateKeyError, the worker failed to boot and gunicorn stopped the gateway."""
    from gateway.keys import INDEXES

    store.ensure_indexes(keys.collection.database, INDEXES)  # the gateway's: a secret's hash is unique
    other = KeyStore(keys.collection.database)
    create = KeyStore.create

    def racing(self, *args, **kwargs):
        create(other, *args, **kwargs)  # the other worker's insert lands first
        return create(self, *args, **kwargs)

    monkeypatch.setattr(KeyStore, "create", racing)
    key = keys.ensure("tcl_operator-chosen", ["admin", "read", "write"], label="TWINCITY_ADMIN_KEY")
    assert key.admin and keys.collection.count_documents({}) == 1


def test_an_expiry_is_kept_in_utc_and_an_expired_key_gets_no_new_secret(keys):
    later = datetime.now(timezone(timedelta(hours=-14))) + timedelta(days=1)
    scopes, expires = domain.new_key_terms(["read", "read"], "karlsruhe", later, datetime.now(UTC))
    assert scopes == ("read",)
    key, _ = keys.create(scopes, city="karlsruhe", expires_at=expires)
    assert key.expires_at.tzinfo == UTC and key.expires_at == later
    keys.collection.update_one({"_id": key.id}, {"$set": {"expires_at": datetime.now(UTC) - timedelta(seconds=1)}})
    assert keys.rotate(key.id) is None


def test_the_last_admin_key_is_counted(keys):
    first, _ = keys.create(["admin"])
    assert keys.other_admins(first.id) == 0
    second, _ = keys.create(["admin", "read"])
    assert keys.other_admins(first.id) == 1
    keys.revoke(second.id)
    assert keys.other_admins(first.id) == 0
