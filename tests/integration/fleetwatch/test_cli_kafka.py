"""`fleetwatch kafka`: a broker in the foreground for separately started workers, stopped by SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from schemas.topics import Topics
from tests.helpers import fleetwatch_env, wait_for

pytestmark = pytest.mark.integration


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_kafka_command_serves_until_sigterm_then_its_jvm_is_gone(tmp_path: Path) -> None:
    topics = Topics(f"k{uuid.uuid4().hex[:8]}.")
    env = fleetwatch_env(topic_prefix=topics.prefix)
    env.pop("FLEETWATCH_LOCAL_KAFKA_PORT", None)
    out, err = tmp_path / "kafka.out", tmp_path / "kafka.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fleetwatch.cli", "kafka", "--port", "0", "--controller-port", "0",
             "--data-dir", str(tmp_path / "data")],
            env=env, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    jvm: int | None = None
    try:

        def bootstrap() -> str | None:
            assert proc.poll() is None, err.read_text()[-3000:]
            found = re.search(r"^bootstrap=(\S+)$", out.read_text(), re.MULTILINE)
            return found.group(1) if found else None

        address = wait_for(bootstrap, 180, "the bootstrap line")
        assert out.read_text().splitlines() == [f"bootstrap={address}"]  # stdout: that line only
        jvm = int(re.findall(r"Kafka ready \(pid (\d+)\)", err.read_text())[0])
        assert _alive(jvm)
        assert (tmp_path / "data" / "kafka" / "broker.log").exists()

        producer = KafkaProducer(bootstrap_servers=address, acks="all")
        producer.send(topics.dead_letter, key=b"k", value=b"through fleetwatch kafka").get(timeout=30)
        producer.close()
        consumer = KafkaConsumer(bootstrap_servers=address, consumer_timeout_ms=10000)
        tp = TopicPartition(topics.dead_letter, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        values = [m.value for m in consumer]
        consumer.close()
        assert values == [b"through fleetwatch kafka"]  # the registry topics exist: created at start

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, err.read_text()[-3000:]
        assert not _alive(jvm), "the broker's JVM outlived `fleetwatch kafka`"
        assert "stopping Kafka" in err.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        if jvm is not None and _alive(jvm):
            os.kill(jvm, signal.SIGKILL)


def test_kafka_command_fails_at_once_when_its_explicit_port_is_taken(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "fleetwatch.cli", "kafka", "--port", str(port),
             "--data-dir", str(tmp_path)],
            env=fleetwatch_env(), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode == 2
    assert f"FLEETWATCH_LOCAL_KAFKA_PORT={port}" in done.stderr
    assert done.stdout == ""
