"""The fleetwatch error tree: one base exception; each error says whether retrying can help."""

from __future__ import annotations


class FleetwatchError(Exception):
    """Base of every error fleetwatch raises on purpose."""

    retriable: bool = False


class ConfigError(FleetwatchError):
    """A setting or a config file is invalid; fix the configuration and start again."""


class InvalidMessage(FleetwatchError):
    """A message or record does not match its contract; it goes to the dead-letter topic."""


class StoreError(FleetwatchError):
    """The history store (ClickHouse) refused or failed an operation."""

    retriable = True


class BrokerError(FleetwatchError):
    """The Kafka broker could not be started, reached or used."""

    retriable = True


class BackpressureError(FleetwatchError):
    """A buffer is full; the caller should slow down and retry."""

    retriable = True
