"""A real single-node Apache Kafka broker (KRaft) on 127.0.0.1, without Docker.

One implementation used by the pytest session fixture, by `fleetwatch up` and by CI:
1. `ensure_jars()` copies the broker's runtime jars from Maven Central into a cache dir (once; later runs
   reuse it) with maven-dependency-plugin over `fleetwatch/broker/pom.xml`.
2. `start()` writes server.properties, formats the KRaft data dir once (cluster id kept in the data dir),
   starts `java -Xmx512m ... kafka.Kafka` with its output in a log file, and waits for real readiness: the
   "Kafka Server started" log line, the PLAINTEXT port accepting, and a metadata call answering.
3. `stop()` sends SIGTERM to its own PID, waits, then SIGKILL.
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from fleetcore.errors import BrokerError

log = logging.getLogger(__name__)

KAFKA_VERSION = "4.4.0"
BROKER_DIR = Path(__file__).parent / "broker"
READY_LINE = "Kafka Server started"


def jars_cache_dir() -> Path:
    """Where the broker jars are cached between runs (FLEETWATCH_KAFKA_JARS overrides)."""
    override = os.environ.get("FLEETWATCH_KAFKA_JARS")
    if override:
        return Path(override)
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "fleetwatch" / f"kafka-{KAFKA_VERSION}"


def ensure_jars(cache: Path | None = None) -> Path:
    """Fetch the broker's runtime jars from Maven Central into the cache (no-op when present)."""
    target = cache or jars_cache_dir()
    marker = target / ".complete"
    if marker.exists():
        return target
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError(
            "Maven (mvn) is needed once to fetch the Kafka jars; install it (apt-get install maven)"
        )
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    cmd = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(BROKER_DIR / "pom.xml"),
        "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={tmp}",
    ]
    log.info("fetching Kafka %s jars from Maven Central into %s", KAFKA_VERSION, target)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not any(tmp.glob("kafka_2.13-*.jar")):
        raise BrokerError(f"fetching Kafka jars failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    (tmp / ".complete").write_text(KAFKA_VERSION)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def new_cluster_id() -> str:
    """16 random bytes, base64url without padding, never starting with '-' (read as a flag)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if "-" not in cid:
            return cid


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class LocalKafka:
    """One local broker+controller node. Use as a context manager or call start()/stop()."""

    data_dir: Path
    port: int = 0
    controller_port: int = 0
    heap: str = "512m"
    jars: Path | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).resolve()
        if not self.port:
            self.port = free_port()
        if not self.controller_port:
            self.controller_port = free_port()

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        """Whether the broker process this object started is still alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_file(self) -> Path:
        return self.data_dir / "broker.log"

    def _write_config(self) -> Path:
        logs = self.data_dir / "kraft-logs"
        logs.mkdir(parents=True, exist_ok=True)
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(logs),
            "num.partitions": "1",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "group.min.session.timeout.ms": "2000",
            "num.network.threads": "2",
            "num.io.threads": "2",
            "log.cleaner.dedupe.buffer.size": "16777216",
            "auto.create.topics.enable": "false",
        }
        path = self.data_dir / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        return path

    def _java(self) -> str:
        java_home = os.environ.get("JAVA_HOME")
        java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
        if not java:
            raise BrokerError(
                "Java 17+ is needed for the local Kafka broker (apt-get install openjdk-17-jre)"
            )
        return java

    def _format(self, config: Path, classpath: str) -> None:
        if (self.data_dir / "kraft-logs" / "meta.properties").exists():
            return
        id_file = self.data_dir / "cluster.id"
        if not id_file.exists():
            id_file.write_text(new_cluster_id())
        cmd = [
            self._java(),
            "-Xmx256m",
            "-cp",
            classpath,
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            "--cluster-id",
            id_file.read_text().strip(),
            "--config",
            str(config),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise BrokerError(f"formatting the KRaft data dir failed:\n{proc.stdout}\n{proc.stderr}")

    def start(self, timeout_s: float = 90.0) -> LocalKafka:
        """Start the broker and wait until it serves metadata."""
        if self._proc is not None:
            return self
        jars = self.jars or ensure_jars()
        classpath = f"{jars}/*"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        self._format(config, classpath)
        app_logs = self.data_dir / "app-logs"
        app_logs.mkdir(exist_ok=True)
        cmd = [
            self._java(),
            f"-Xms{min(256, int(self.heap.rstrip('m')))}m",
            f"-Xmx{self.heap}",
            "-XX:+UseG1GC",
            "-XX:MaxDirectMemorySize=256m",
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={app_logs}",
            f"-Dlog4j2.configurationFile={BROKER_DIR / 'log4j2.properties'}",
            "-cp",
            classpath,
            "kafka.Kafka",
            str(config),
        ]
        start_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        with self.log_file.open("ab") as out:
            self._proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        try:
            self._wait_ready(start_offset, timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, start_offset: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        seen_line = False
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise BrokerError(
                    f"Kafka exited with {self._proc.returncode}; see {self.log_file}:\n{self._tail()}"
                )
            if not seen_line:
                with self.log_file.open("rb") as fh:
                    fh.seek(start_offset)
                    seen_line = READY_LINE.encode() in fh.read()
            if seen_line and _port_open(self.port) and self._metadata_ok():
                log.info("Kafka ready on %s (pid %s)", self.bootstrap, self.pid)
                return
            time.sleep(0.2)
        raise BrokerError(f"Kafka not ready after {timeout_s:.0f} s; see {self.log_file}:\n{self._tail()}")

    def _metadata_ok(self) -> bool:
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        try:
            admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
        except (KafkaError, OSError):
            return False
        try:
            admin.describe_cluster()
            return True
        except (KafkaError, OSError):
            return False
        finally:
            admin.close()

    def _tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM our own broker process, then SIGKILL it if it lingers."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def __enter__(self) -> LocalKafka:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
