"""Dead letters: messages (or parts of messages) a consumer could not accept, with the reason."""

from __future__ import annotations

from pydantic import Field

from schemas.base import Contract, UtcDatetime


class DeadLetter(Contract):
    """One rejected message or batch item. Key on the dead-letter topic: `<topic>:<partition>:<offset>`."""

    source_topic: str
    """Topic the message came from."""
    partition: int = Field(ge=0)
    """Partition it came from."""
    offset: int = Field(ge=0)
    """Offset of the message."""
    item: int | None = Field(default=None, ge=0)
    """Index inside a batch envelope when one item was rejected; None when the whole message was."""
    consumer: str = Field(min_length=1)
    """The consumer that rejected it (stream, sink, ...)."""
    reason: str
    """Why it was rejected, in words a person can act on."""
    payload: str
    """The rejected bytes, decoded as UTF-8 with replacement (truncated to 64 KiB)."""
    rejected_at: UtcDatetime
    """When it was rejected."""
