"""The case engine agent signs every event it emits with the configured key (or the one it generated in its
data dir), so the chain verifies; notifications carry a chain head that is on the topic."""

from __future__ import annotations

from pathlib import Path

import pytest
from yarl import URL

from casefile.audit import verify_chain
from casefile.signing import load_keyring
from fleetcore.settings import Settings
from schemas.commands import CommandType
from streams.app import StreamApp, create_app
from tests.helpers import monitor_command
from tests.unit.casefile.builders import KEYS, SEED_B64, SIGNER
from tests.unit.streams.test_agent import Sent


def _app(settings: Settings) -> StreamApp:
    app = create_app(settings)
    app.app.finalize()
    app.app.conf.store = URL("memory://")
    app.app.flow_control.resume()
    return app


@pytest.fixture
def signed_stream(tmp_path: Path) -> StreamApp:
    return _app(
        Settings(topic_prefix="unit.", data_dir=tmp_path, stream_web_port=0, audit_signing_key=SEED_B64)
    )


async def test_engine_signs_every_event_with_the_configured_key(signed_stream: StreamApp) -> None:
    sent = Sent()
    sent.attach(signed_stream)
    command = monitor_command("db-01", CommandType.OPEN, 10)
    async with signed_stream.engine.test_context() as engine:
        await engine.put(command.model_dump_json().encode())
    assert sent.cases
    assert {e.key_id for e in sent.cases} == {SIGNER.key_id}
    report = verify_chain(sent.cases, keys=KEYS)
    assert report.verified, report.problems
    by_seq = {e.seq: e for e in sent.cases}
    assert sent.notifications
    for note in sent.notifications:
        assert note.chain_seq is not None
        assert by_seq[note.chain_seq].hash == note.chain_hash


async def test_engine_without_a_configured_key_generates_one_in_its_data_dir(tmp_path: Path) -> None:
    stream = _app(Settings(topic_prefix="unit.", data_dir=tmp_path, stream_web_port=0))
    sent = Sent()
    sent.attach(stream)
    async with stream.engine.test_context() as engine:
        await engine.put(monitor_command("db-02", CommandType.OPEN, 10).model_dump_json().encode())
    assert (tmp_path / "audit" / "case-signing-key.pem").is_file()
    keys = load_keyring(Settings(data_dir=tmp_path))  # what the CLI and the sink on this host verify with
    assert verify_chain(sent.cases, keys=keys).verified
