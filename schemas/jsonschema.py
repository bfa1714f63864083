"""JSON Schema of each topic's value: the published contract for downstream consumers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from schemas.topics import TOPICS, TopicSpec


def topic_schema(spec: TopicSpec) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one topic's message value."""
    schema = spec.value_model.model_json_schema(mode="serialization")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"fleetwatch:topic:{spec.name}",
        "description": f"{spec.description} Key: {spec.key}.",
        **{k: v for k, v in schema.items() if k != "description"},
        "x-fleetwatch-topic": {
            "name": spec.name,
            "key": spec.key,
            "partitions": spec.partitions,
            "cleanup.policy": spec.cleanup_policy,
        },
    }


def render(spec: TopicSpec) -> str:
    """The schema file's text (stable, so a diff shows contract changes)."""
    return json.dumps(topic_schema(spec), indent=2, sort_keys=True) + "\n"


def write_schemas(out_dir: Path) -> list[Path]:
    """Write `<topic>.schema.json` for every registry topic into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for spec in TOPICS.values():
        path = out_dir / f"{spec.name}.schema.json"
        path.write_text(render(spec))
        written.append(path)
    return written
