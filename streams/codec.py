"""Faust codecs for fleetwatch's pydantic contracts.

faust.Record cannot carry pydantic models (`value_type` must be a faust Model), so topics and tables use a
codec: JSON via `model_dump_json()` out, `model_validate_json()` in. Registered once per process by name.
"""

from __future__ import annotations

from typing import Any

from faust.serializers import codecs
from pydantic import BaseModel

from schemas.cases import CaseEvent
from schemas.commands import CaseCommand
from schemas.deadletter import DeadLetter
from schemas.notifications import Notification
from streams.cases import Case
from streams.detector import ServerStreak


class PydanticCodec(codecs.Codec):
    """Serialize one pydantic model class as JSON."""

    def __init__(self, model: type[BaseModel], **kwargs: Any) -> None:
        self.model = model
        super().__init__(model=model, **kwargs)

    def _dumps(self, obj: Any) -> bytes:
        if isinstance(obj, BaseModel):
            return obj.model_dump_json().encode()
        return self.model.model_validate(obj).model_dump_json().encode()

    def _loads(self, s: bytes) -> Any:
        return self.model.model_validate_json(s)


CASE_EVENT = "fw_case_event"
DEAD_LETTER = "fw_dead_letter"
SERVER_STREAK = "fw_server_streak"
CASE_COMMAND = "fw_case_command"
NOTIFICATION = "fw_notification"
CASE = "fw_case"

_REGISTERED: dict[str, type[BaseModel]] = {
    CASE_EVENT: CaseEvent,
    DEAD_LETTER: DeadLetter,
    SERVER_STREAK: ServerStreak,
    CASE_COMMAND: CaseCommand,
    NOTIFICATION: Notification,
    CASE: Case,
}


def register_codecs() -> None:
    """Register every fleetwatch codec with Faust (idempotent)."""
    for name, model in _REGISTERED.items():
        codecs.register(name, PydanticCodec(model))
