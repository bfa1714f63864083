"""The published JSON Schemas match the models and validate real messages."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from schemas.cases import CaseEventType
from schemas.commands import CaseCommand
from schemas.jsonschema import render, topic_schema
from schemas.topics import CASE_COMMANDS, CASES, PROBE_RESULTS, TOPICS
from streams.detector import INITIAL, observe
from tests.helpers import T0, case_event, result

DOCS = Path(__file__).resolve().parents[3] / "docs" / "schemas"


@pytest.mark.parametrize("name", sorted(TOPICS))
def test_committed_schema_is_current(name: str) -> None:
    committed = (DOCS / f"{name}.schema.json").read_text()
    assert committed == render(TOPICS[name]), "run `fleetwatch schema export` and commit docs/schemas"


def test_case_event_validates_against_published_schema() -> None:
    schema = topic_schema(CASES)
    event = case_event("s1", CaseEventType.CASE_OPENED, 9)
    jsonschema.validate(json.loads(event.model_dump_json()), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"event_id": "x"}, schema)


def test_detector_command_validates_against_published_schema() -> None:
    state = INITIAL
    commands: list[CaseCommand] = []
    for i in range(10):
        state, new = observe(state, result("s1", i, ok=False), T0)
        commands.extend(new)
    schema = topic_schema(CASE_COMMANDS)
    jsonschema.validate(json.loads(commands[0].model_dump_json()), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"command_id": "x"}, schema)


def test_probe_batch_schema_accepts_a_batch() -> None:
    batch = {
        "batch_id": "w:1",
        "worker_id": "w",
        "partition": 0,
        "results": [json.loads(result("s", 0, ok=True).model_dump_json())],
    }
    jsonschema.validate(batch, topic_schema(PROBE_RESULTS))
