"""A real Apache Kafka broker (KRaft) on 127.0.0.1, without Docker: one node, or a cluster of three.

One implementation used by the pytest session fixture, by `fleetwatch up` and by CI:
1. `ensure_jars()` copies the broker's runtime jars from Maven Central into a cache dir (once; later runs
   reuse it) with maven-dependency-plugin over `fleetwatch/broker/pom.xml`.
2. `start()` writes server.properties, formats the KRaft data dir once (cluster id kept in the data dir),
   starts `java -Xmx512m ... kafka.Kafka` with its output in a log file, and waits for real readiness: the
   "Kafka Server started" log line, the PLAINTEXT port accepting, and a metadata call answering.
3. `stop()` sends SIGTERM to its own PID, waits, then SIGKILL.

`LocalKafkaCluster` runs N combined broker+controller nodes (node ids 1..N) as one KRaft cluster with a
dynamic quorum (KIP-853): every node is formatted with the same `--initial-controllers` string
(`id@host:controller_port:directory_id`, one per node), all nodes are launched before any readiness wait
(no node serves without a quorum majority), internal topics get replication factor 3 / min ISR 2, and all
nodes are stopped together with SIGTERM (stopped one by one, the last node loses its quorum and hangs in
controlled shutdown). Its ports are kept in `<data dir>/cluster.json`, since the quorum remembers them.
"""

from __future__ import annotations

import base64
import json
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
from typing import Any

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


def min_insync_replicas(replication_factor: int) -> int:
    """min.insync.replicas for a replication factor: 2 of 3 (one node may be down), else 1."""
    return max(1, min(2, replication_factor - 1))


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class LocalKafka:
    """One local broker+controller node. Use as a context manager or call start()/stop().

    Alone (the defaults) it is a one-node cluster formatted `--standalone`. As a member of a
    `LocalKafkaCluster` it gets its `node_id`, the cluster's `quorum` (controller bootstrap servers),
    `initial_controllers` (format string), `cluster_id` and `replication` (3: internal topics
    RF 3, min ISR 2).
    """

    data_dir: Path
    port: int = 0
    controller_port: int = 0
    heap: str = "512m"
    jars: Path | None = None
    node_id: int = 1
    quorum: str = ""
    initial_controllers: str = ""
    cluster_id: str = ""
    replication: int = 1
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
    def pids(self) -> list[int]:
        return [] if self._proc is None else [self._proc.pid]

    @property
    def members(self) -> list[LocalKafka]:
        """The nodes: this one (a cluster lists its nodes)."""
        return [self]

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
        rf = str(self.replication)
        min_isr = str(min_insync_replicas(self.replication))
        props = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.bootstrap.servers": self.quorum or f"127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(logs),
            "num.partitions": "1",
            "default.replication.factor": rf,
            "min.insync.replicas": min_isr,
            "offsets.topic.replication.factor": rf,
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": rf,
            "transaction.state.log.min.isr": min_isr,
            "share.coordinator.state.topic.replication.factor": rf,
            "share.coordinator.state.topic.min.isr": min_isr,
            "group.initial.rebalance.delay.ms": "0",
            "group.min.session.timeout.ms": "2000",
            "num.network.threads": "2",
            "num.io.threads": "2",
            "log.cleaner.dedupe.buffer.size": "16777216",
            "auto.create.topics.enable": "false",
        }
        if self.replication > 1:
            # a killed node is fenced after 3 s instead of 9 s: the produce stall on its partitions shrinks
            props["broker.session.timeout.ms"] = "3000"
            props["broker.heartbeat.interval.ms"] = "1000"
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
            id_file.write_text(self.cluster_id or new_cluster_id())
        quorum = (
            ["--initial-controllers", self.initial_controllers]
            if self.initial_controllers
            else ["--standalone"]
        )
        cmd = [
            self._java(),
            "-Xmx256m",
            "-cp",
            classpath,
            "kafka.tools.StorageTool",
            "format",
            *quorum,
            "--cluster-id",
            id_file.read_text().strip(),
            "--config",
            str(config),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise BrokerError(f"formatting the KRaft data dir failed:\n{proc.stdout}\n{proc.stderr}")

    def start(self, timeout_s: float = 90.0) -> LocalKafka:
        """Start the broker and wait until it serves metadata (a restart once its process has died)."""
        if self.running:
            return self
        start_offset = self.launch()
        try:
            self.wait_ready(start_offset, timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def launch(self) -> int:
        """Format (once) and start the JVM without waiting; returns the log offset `wait_ready` reads from."""
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
        return start_offset

    def wait_ready(self, start_offset: int, timeout_s: float) -> None:
        """Wait for the ready log line (after `start_offset`), the open port and a metadata answer."""
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

    def kill(self) -> None:
        """SIGKILL our own broker process (a crash, for tests); `start()` brings it back."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(timeout=10)

    def terminate(self) -> subprocess.Popen[bytes] | None:
        """Send SIGTERM to our own process without waiting; returns it (None: not running)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return None
        proc.send_signal(signal.SIGTERM)
        return proc

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM our own broker process, then SIGKILL it if it lingers."""
        _reap(self.terminate(), timeout_s)

    def __enter__(self) -> LocalKafka:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _reap(proc: subprocess.Popen[bytes] | None, timeout_s: float) -> None:
    """Wait for a process we sent SIGTERM; SIGKILL it if it lingers."""
    if proc is None:
        return
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def new_directory_id() -> str:
    """A KRaft directory id (same shape as a cluster id; never starting with '-')."""
    return new_cluster_id()


@dataclass
class LocalKafkaCluster:
    """`size` local broker+controller nodes forming one KRaft cluster (dynamic quorum) on 127.0.0.1.

    Node i lives in `<data_dir>/n<i>`. `ports` gives each node's (PLAINTEXT, CONTROLLER) ports (missing ones:
    free ports); the ports and directory ids are kept in `<data_dir>/cluster.json` on the first start and
    reused by later starts of the same data dir. Stopped as a whole with SIGTERM to every node at once.
    """

    data_dir: Path
    size: int = 3
    heap: str = "256m"
    ports: list[tuple[int, int]] = field(default_factory=list)
    jars: Path | None = None
    nodes: list[LocalKafka] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).resolve()
        if self.size < 1:
            raise BrokerError(f"a cluster needs at least one node, not {self.size}")
        layout = self._layout()
        replication = min(3, self.size)
        quorum = ",".join(f"127.0.0.1:{ctl}" for _, ctl in layout["ports"])
        initial = ",".join(
            f"{i}@127.0.0.1:{ctl}:{dir_id}"
            for i, ((_, ctl), dir_id) in enumerate(
                zip(layout["ports"], layout["directory_ids"], strict=True), 1
            )
        )
        self.nodes = [
            LocalKafka(
                self.data_dir / f"n{i}",
                port=port,
                controller_port=ctl,
                heap=self.heap,
                jars=self.jars,
                node_id=i,
                quorum=quorum,
                initial_controllers=initial,
                cluster_id=layout["cluster_id"],
                replication=replication,
            )
            for i, (port, ctl) in enumerate(layout["ports"], 1)
        ]

    def _layout(self) -> dict[str, Any]:
        """Cluster id, directory ids and ports: from cluster.json when this data dir has one, else new."""
        path = self.data_dir / "cluster.json"
        if path.exists():
            layout: dict[str, Any] = json.loads(path.read_text())
            if len(layout["ports"]) != self.size:
                raise BrokerError(
                    f"{self.data_dir} holds a {len(layout['ports'])}-node cluster, not {self.size} nodes; "
                    "use another data dir"
                )
            layout["ports"] = [tuple(p) for p in layout["ports"]]
            return layout
        ports = [self.ports[i] if i < len(self.ports) else (0, 0) for i in range(self.size)]
        layout = {
            "cluster_id": new_cluster_id(),
            "directory_ids": [new_directory_id() for _ in range(self.size)],
            "ports": [(port or free_port(), ctl or free_port()) for port, ctl in ports],
        }
        self.data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(layout))
        return layout

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes)

    @property
    def pids(self) -> list[int]:
        return [node.pid for node in self.nodes if node.pid is not None]

    @property
    def members(self) -> list[LocalKafka]:
        return list(self.nodes)

    def start(self, timeout_s: float = 120.0) -> LocalKafkaCluster:
        """Launch every node, then wait for each and for all `size` brokers in the cluster metadata."""
        try:
            offsets = [node.launch() for node in self.nodes]
            for node, offset in zip(self.nodes, offsets, strict=True):
                node.wait_ready(offset, timeout_s)
            self.wait_brokers(self.size, timeout_s)
        except BaseException:
            self.stop()
            raise
        log.info("Kafka cluster of %d ready on %s (pids %s)", self.size, self.bootstrap, self.pids)
        return self

    def wait_brokers(self, count: int, timeout_s: float = 60.0) -> None:
        """Wait until the cluster metadata lists `count` brokers."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if broker_count(self.bootstrap) == count:
                return
            time.sleep(0.2)
        raise BrokerError(
            f"Kafka cluster on {self.bootstrap} has not {count} brokers after {timeout_s:.0f} s"
        )

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM every node at once (one by one, the last would lose its quorum and hang), then reap."""
        procs = [node.terminate() for node in self.nodes]
        for proc in procs:
            _reap(proc, timeout_s)

    def __enter__(self) -> LocalKafkaCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def broker_count(bootstrap: str) -> int:
    """Brokers in the cluster metadata (0: no answer)."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    except (KafkaError, OSError):
        return 0
    try:
        return len(admin.describe_cluster().get("brokers", []))
    except (KafkaError, OSError):
        return 0
    finally:
        admin.close()


CLUSTER_HEAP = "256m"
"""Heap of each node of a local cluster (3 x 256 MB; a node's RSS is about 210-290 MB)."""


def local_broker(
    data_dir: Path, brokers: int, port: int, controller_port: int, heap: str
) -> LocalKafka | LocalKafkaCluster:
    """The local Kafka of `up` and `kafka` under `data_dir`: one node in `<data_dir>/kafka` on the given
    ports, or a cluster of `brokers` nodes (heap 256m each) in `<data_dir>/kafka-cluster`, node 1 on the
    given ports and the others on free ports (all kept in its cluster.json for later starts)."""
    if brokers == 1:
        return LocalKafka(data_dir / "kafka", port=port, controller_port=controller_port, heap=heap)
    return LocalKafkaCluster(
        data_dir / "kafka-cluster", size=brokers, heap=CLUSTER_HEAP, ports=[(port, controller_port)]
    )
