"""The ideas repository's writes against the relay running beside them (in-memory store)."""

from __future__ import annotations

import mongomock

from ideas import usecases
from ideas.repository import unit_of_work
from services import outbox
from services.store import now
from services.tenancy import Caller


def test_an_erasure_does_not_put_back_events_the_relay_published_meanwhile():
    db = mongomock.MongoClient()["ideas"]
    uow = unit_of_work(db)
    karlsruhe = Caller(city="karlsruhe", scopes=("read", "write"), visible_cities=("karlsruhe",))
    person = usecases.register_participant(uow, karlsruhe, {"name": "Lena Hoffmann", "email": "lena@example.org",
                                                            "language": "de", "interests": "Gärten"}, now)
    collection = uow.participants.collection
    read = collection.find_one

    def read_then_relay(*args, **kwargs):
        found = read(*args, **kwargs)
        # The relay publishes participant.registered and pulls it, between the erasure's read and its write.
        collection.update_one({"_id": person.id}, {"$pull": {outbox.FIELD: {"id": {"$exists": True}}}})
        return found

    collection.find_one = read_then_relay
    usecases.erase_participant(uow, karlsruhe, person.id, now)
    del collection.find_one

    doc = db["participants"].find_one({"_id": person.id})
    assert [e["type"] for e in doc[outbox.FIELD]] == ["participant.erased"], "published events stay published"
    assert doc["erased"] and doc["version"] == 2 and doc["city"] == "karlsruhe"
    assert not {"name", "email", "email_key", "interests", "language"} & set(doc), "the person is forgotten"
