"""Contracts of fleetwatch: pydantic models of every topic's values and the topic registry. No IO here."""

from schemas.cases import CaseEvent, CaseEventType, CaseSource, Severity
from schemas.deadletter import DeadLetter
from schemas.inventory import ProbeKind, Server, ServerRole
from schemas.probes import HealthMetrics, ProbeBatch, ProbeResult
from schemas.topics import TOPICS, Topics, TopicSpec

__all__ = [
    "TOPICS",
    "CaseEvent",
    "CaseEventType",
    "CaseSource",
    "DeadLetter",
    "HealthMetrics",
    "ProbeBatch",
    "ProbeKind",
    "ProbeResult",
    "Server",
    "ServerRole",
    "Severity",
    "TopicSpec",
    "Topics",
]
