"""The outbox relay with a fake publisher: publish first, remove after; failures remove nothing."""

from datetime import UTC, datetime, timedelta

import pytest

from services import outbox, store
from services.bus import Publisher, PublishError
from services.contract import new_event


class FakePublisher(Publisher):
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[dict] = []
        self.fail = fail

    def publish(self, envelopes):
        if self.fail:
            raise PublishError("broker said no")
        self.sent.extend(envelopes)

    def close(self):
        pass


@pytest.fixture
def db():
    url = "mongomock://relay-unit"
    yield store.client_for(url)["t"]
    store.forget(url)


def ev(n):
    return new_event("idea.withdrawn", {"idea_id": str(n), "city": "c", "version": 1}, producer="t")


def test_pending_events_are_published_in_order_then_removed(db):
    db.things.insert_one(outbox.with_events({"_id": 1}, [ev(1), ev(2)]))
    db.things.update_one({"_id": 1}, outbox.push_events({"$set": {"x": 1}}, [ev(3)]))
    db.things.insert_one({"_id": 2, "quiet": True})
    fake = FakePublisher()
    relay = outbox.Relay("t", db, ["things"], lambda: fake)
    assert relay.relay_once() == 3
    assert [e["payload"]["idea_id"] for e in fake.sent] == ["1", "2", "3"]
    assert db.things.find_one({"_id": 1}) == {"_id": 1, "x": 1, "_outbox": []}
    assert relay.relay_once() == 0 and relay.backlog() == 0


def test_events_of_several_collections_go_out_in_the_order_they_happened(db):
    """A participant registered (participants) just before submitting an idea (ideas): a consumer hears of the
    author first, whichever collection the relay reads first. Before, each collection went out in turn, and
    matching could propose a match to a person it did not know yet (an accept in their name was refused)."""
    at = datetime.now(UTC) - timedelta(seconds=5)
    stamped = [{**ev(n), "occurred_at": (at + timedelta(milliseconds=n)).isoformat()} for n in range(4)]
    db.ideas.insert_one(outbox.with_events({"_id": "i"}, [stamped[1], stamped[3]]))
    db.participants.insert_one(outbox.with_events({"_id": "p"}, [stamped[0], stamped[2]]))
    fake = FakePublisher()
    relay = outbox.Relay("t", db, ["ideas", "participants"], lambda: fake)
    assert relay.relay_once() == 4 and relay.backlog() == 0
    assert [e["payload"]["idea_id"] for e in fake.sent] == ["0", "1", "2", "3"]


def test_a_failed_publish_removes_nothing(db):
    db.things.insert_one(outbox.with_events({"_id": 1}, [ev(1)]))
    relay = outbox.Relay("t", db, ["things"], lambda: FakePublisher(fail=True))
    with pytest.raises(PublishError):
        relay.relay_once()
    assert relay.backlog() == 1


def test_a_sweep_leaves_fresh_events_to_the_process_that_wrote_them(db):
    old = {**ev(1), "occurred_at": (datetime.now(UTC) - timedelta(seconds=60)).isoformat()}
    db.things.insert_one(outbox.with_events({"_id": 1}, [old, ev(2)]))
    fake = FakePublisher()
    relay = outbox.Relay("t", db, ["things"], lambda: fake)
    assert relay.relay_once(older_than=5) == 1 and fake.sent == [old]
    assert [e["payload"]["idea_id"] for e in db.things.find_one({"_id": 1})["_outbox"]] == ["2"]


def test_the_background_relay_publishes_after_a_kick(db):
    fake = FakePublisher()
    relay = outbox.Relay("t", db, ["things"], lambda: fake, poll_interval=30).start()
    try:
        relay.relay_once()  # the start-up pass is done; from here only kicks publish quickly
        db.things.insert_one(outbox.with_events({"_id": 1}, [ev(1)]))
        relay.kick()
        from tests.conftest import wait_for

        wait_for(lambda: len(fake.sent) == 1, timeout=5, message="the kicked publish")
    finally:
        relay.stop()


def test_the_backlog_gauge_counts_what_waits_also_while_the_broker_is_down(db):
    """twincity_outbox_backlog read 0 during an outage: it was set only after a pass that published."""
    from services import metrics
    from tests.conftest import wait_for

    gauge = metrics.OUTBOX_BACKLOG.labels("backlog-test")
    for n in range(3):
        db.things.insert_one(outbox.with_events({"_id": n}, [ev(n), ev(10 + n)]))
    relay = outbox.Relay("backlog-test", db, ["things"], lambda: FakePublisher(fail=True), poll_interval=0.05,
                         batch=2).start()
    try:
        wait_for(lambda: gauge._value.get() == 6, timeout=5, message="the gauge to count six pending events")
        db.things.insert_one(outbox.with_events({"_id": 9}, [ev(9)]))
        wait_for(lambda: gauge._value.get() == 7, timeout=5, message="the gauge to follow the store on every poll")
    finally:
        relay.stop()
    fake = FakePublisher()
    outbox.Relay("backlog-test", db, ["things"], lambda: fake, batch=100).relay_once()
    assert gauge._value.get() == 0 and len(fake.sent) == 7
