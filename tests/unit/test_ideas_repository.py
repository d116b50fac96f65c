"""The ideas repository's writes against the relay running beside them (in-memory store)."""

from __future__ import annotations

import mongomock

from ideas.repository import Repository
from services import outbox


def test_an_erasure_does_not_put_back_events_the_relay_published_meanwhile():
    db = mongomock.MongoClient()["ideas"]
    repo = Repository(db)
    person = repo.add_participant({"name": "Lena Hoffmann", "email": "lena@example.org", "city": "karlsruhe",
                                   "language": "de", "interests": "Gärten"})
    read = repo.participants.find_one

    def read_then_relay(*args, **kwargs):
        found = read(*args, **kwargs)
        # The relay publishes participant.registered and pulls it, between the erasure's read and its write.
        repo.participants.update_one({"_id": person["_id"]}, {"$pull": {outbox.FIELD: {"id": {"$exists": True}}}})
        return found

    repo.participants.find_one = read_then_relay
    repo.erase_participant(person["_id"])
    del repo.participants.find_one

    doc = db["participants"].find_one({"_id": person["_id"]})
    assert [e["type"] for e in doc[outbox.FIELD]] == ["participant.erased"], "published events stay published"
    assert doc["erased"] and doc["version"] == 2 and doc["city"] == "karlsruhe"
    assert not {"name", "email", "email_key", "interests", "language"} & set(doc), "the person is forgotten"
