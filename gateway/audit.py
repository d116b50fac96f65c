"""The audit log: every change made with an admin key (through the API or `twincity admin`), for admins to read."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from services.aggregate import page
from services.store import Index, new_id

COLLECTION = "audit"
INDEXES = {COLLECTION: [Index(keys=[("key_id", 1), ("_id", -1)], name="audit_key")]}


class AuditLog:
    def __init__(self, db: Any) -> None:
        self.collection = db[COLLECTION]

    def record(self, *, actor: str, action: str, target: str, status: int | None = None,
               request_id: str | None = None, detail: Mapping[str, Any] | None = None) -> None:
        self.collection.insert_one({
            "_id": new_id("aud"), "at": datetime.now(UTC), "key_id": actor, "action": action, "target": target,
            "status": status, "request_id": request_id, "detail": dict(detail or {}),
        })

    def page(self, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        return page(self.collection, {}, limit, cursor)
