"""Errors of the probe worker and the inventory loader (all under fleetcore's FleetwatchError)."""

from __future__ import annotations

from fleetcore.errors import BrokerError, ConfigError


class InventoryFileError(ConfigError):
    """An inventory file cannot be read or holds an invalid entry; the message names the file and entry."""


class InventoryPublishError(BrokerError):
    """Publishing the inventory to Kafka failed; nothing is wrong with the file, retrying can help."""


class SendError(BrokerError):
    """A ProbeBatch could not be delivered to the probe-results topic; the worker retries it."""
