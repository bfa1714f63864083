"""Base model and shared field types of every contract."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict


def _aware_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamps must carry a timezone (UTC)")
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:  # e.g. 0001-01-01T00:00+01:00: a ValueError makes it a validation error
        raise ValueError("timestamp is out of range in UTC") from exc


UtcDatetime = Annotated[datetime, AfterValidator(_aware_utc)]
"""A timezone-aware timestamp, normalised to UTC; naive timestamps are rejected."""


class Contract(BaseModel):
    """Base of every message model: immutable, unknown fields rejected, JSON on the wire."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)
