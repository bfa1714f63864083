"""The production topology (docker-compose.yml, Dockerfile) checked without a Docker engine.

1. docker-compose.yml is valid against the Compose specification's JSON Schema (vendored in
   tests/data/compose-spec, with its license and upstream commit); broken copies of it are rejected, so the
   validation is not vacuous.
2. The fleetwatch services only use FLEETWATCH_* variables that are real `Settings` fields (with values
   Settings accepts), and their commands parse with the real `fleetwatch` CLI parser.
3. Topology: depends_on targets exist (and have a healthcheck when waited on healthy), the broker heap is
   bounded below its memory limit, the workers reach Kafka and ClickHouse by service name, the files
   mounted into the services (fleet, SLA policy book, contacts directory) exist and load, each long-running
   worker serves /metrics on 0.0.0.0 at the port its healthcheck asks, and the notifier's delivery endpoints
   are placeholders (no address or secret committed).
4. Audit keys: the case engine's signing key is a required secret given only to the stream (and the one-shot
   that publishes its public key); every service that verifies case events gets the public key list, checked
   by running the publisher's real command and loading each verifier's list.

"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import io
import json
import os
import re
import shlex
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from fleetcore.settings import Settings
from fleetwatch.cli import build_parser
from fleetwatch.kafka_local import KAFKA_VERSION
from policy.sla import load_policy_book
from probes.inventory import load_inventory_file
from sinks.notifier.directory import load_directory

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
COMPOSE_SCHEMA = REPO_ROOT / "tests" / "data" / "compose-spec" / "compose-spec.schema.json"
# The vendored upstream file, unchanged (tests/data/compose-spec/README.md says where it comes from).
COMPOSE_SCHEMA_SHA256 = "1f91e091f16b2dd50ab8860e02bb391d22df553d91c145eacedb1b6eff9c3f0e"
ENV_PREFIX = "FLEETWATCH_"

FLEETWATCH_SERVICES = {
    "inventory-loader",
    "audit-keys",
    "probe",
    "stream",
    "notify",
    "intake",
    "portal",
    "sink",
}
INFRA_SERVICES = {"kafka", "clickhouse"}


# -- loading -------------------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader refusing duplicate mapping keys, as Compose does (PyYAML silently keeps the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _value in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str) -> Any:
    """YAML as Compose reads it: anchors and `<<` merges resolved, duplicate keys refused."""
    return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    schema = json.loads(COMPOSE_SCHEMA.read_text(encoding="utf-8"))
    # The schema declares draft-07; say so explicitly instead of relying on $schema lookup.
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = load_yaml(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(doc, dict), "docker-compose.yml must be a mapping"
    return doc


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    svcs = compose.get("services")
    assert isinstance(svcs, dict), "docker-compose.yml has no services mapping"
    assert svcs, "docker-compose.yml has no services"
    return svcs


# -- helpers -------------------------------------------------------------------------------------------


def schema_errors(validator: jsonschema.Draft7Validator, doc: Any) -> list[str]:
    """Every schema violation of `doc`, as `path: message` lines."""
    return [
        f"{'/'.join(str(p) for p in err.absolute_path) or '<root>'}: {err.message}"
        for err in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    ]


def environment(service: Mapping[str, Any]) -> dict[str, str | None]:
    """A service's environment as a dict, from either the mapping or the list (`KEY=VALUE`) form."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) for item in env)
        return {p[0]: (p[1] if len(p) > 1 else None) for p in pairs}
    return {str(k): (None if v is None else str(v)) for k, v in env.items()}


_INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}")


def interpolate(value: str, given: Mapping[str, str] | None = None) -> str:
    """Compose-style `${VAR}`, `${VAR:-default}`, `${VAR:?error}` with `given` (unset: default or "x")."""
    given = given or {}

    def sub(m: re.Match[str]) -> str:
        name, op = m.group("name"), m.group("op") or ""
        if name in given:
            return given[name]
        return m.group("arg") if op.endswith("-") else "x"

    return _INTERPOLATION.sub(sub, value.replace("$$", "\0")).replace("\0", "$")


def required_vars(value: str) -> list[str]:
    """The `${VAR:?message}` names of `value`: `docker compose` refuses to run while one is unset or empty."""
    return [
        m.group("name") for m in _INTERPOLATION.finditer(value.replace("$$", "")) if m.group("op") == ":?"
    ]


def unknown_fleetwatch_vars(env: Mapping[str, object]) -> list[str]:
    """FLEETWATCH_* names that are no `FLEETWATCH_<field>` of Settings (Settings ignores typos silently)."""
    fields = set(Settings.model_fields)
    return sorted(
        name
        for name in env
        if name.upper().startswith(ENV_PREFIX)
        and (name != name.upper() or name[len(ENV_PREFIX) :].lower() not in fields)
    )


def settings_from_env(env: Mapping[str, str | None]) -> Settings:
    """Settings built from a service's FLEETWATCH_* values (raises pydantic.ValidationError on bad values)."""
    values = {
        name[len(ENV_PREFIX) :].lower(): interpolate(value)
        for name, value in env.items()
        if name.startswith(ENV_PREFIX) and value is not None
    }
    return Settings.model_validate(values)


def command_args(service: Mapping[str, Any]) -> list[str]:
    command = service.get("command")
    if command is None:
        return []
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def parse_command(args: list[str]) -> argparse.Namespace | str:
    """The namespace the real `fleetwatch` parser builds from `args`, or argparse's error text."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            return build_parser().parse_args(args)
        except SystemExit:
            return err.getvalue().strip() or "argparse exited"


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?)b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def byte_size(value: str | int) -> int:
    """Compose / JVM memory sizes: 512m, 1g, 1024k, 123 (bytes)."""
    if isinstance(value, int):
        return value
    m = _SIZE.match(value)
    if not m:
        raise ValueError(f"not a memory size: {value!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def memory_limit(service: Mapping[str, Any]) -> int | None:
    limit = ((service.get("deploy") or {}).get("resources") or {}).get("limits", {}).get("memory")
    if limit is None:
        limit = service.get("mem_limit")
    return None if limit is None else byte_size(limit)


def depends_on(service: Mapping[str, Any]) -> dict[str, str]:
    """depends_on as {service: condition} (list form means service_started)."""
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def mounts(service: Mapping[str, Any]) -> list[tuple[str, str]]:
    """A service's volumes as (source, target), from the short (`src:dst[:mode]`) or the long syntax."""
    out = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume["source"], volume["target"]
        out.append((source, target))
    return out


def mounted_host_file(service: Mapping[str, Any], container_file: Path) -> Path | None:
    """The host file a bind mount of `service` shows at `container_file` (None: on no mounted volume)."""
    for source, target in mounts(service):
        if container_file.is_relative_to(target):
            return (REPO_ROOT / source / container_file.relative_to(target)).resolve()
    return None


def iter_fleetwatch(services: Mapping[str, dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The services that run the fleetwatch image (built from ./Dockerfile)."""
    for name, svc in services.items():
        if "build" in svc:
            yield name, svc


# -- 1. the Compose specification ----------------------------------------------------------------------


def test_the_vendored_schema_is_the_upstream_file_with_its_license() -> None:
    digest = hashlib.sha256(COMPOSE_SCHEMA.read_bytes()).hexdigest()
    assert digest == COMPOSE_SCHEMA_SHA256, "the vendored Compose schema differs from the upstream file"
    schema = json.loads(COMPOSE_SCHEMA.read_text(encoding="utf-8"))
    assert schema["$id"] == "compose_spec.json"
    assert "draft-07" in schema["$schema"]
    vendored = COMPOSE_SCHEMA.parent
    assert "Apache License" in (vendored / "LICENSE").read_text(encoding="utf-8")
    assert COMPOSE_SCHEMA_SHA256 in (vendored / "README.md").read_text(encoding="utf-8")


def test_compose_file_is_valid_against_the_compose_spec(
    validator: jsonschema.Draft7Validator, compose: dict[str, Any]
) -> None:
    errors = schema_errors(validator, compose)
    assert not errors, "docker-compose.yml violates the Compose spec:\n" + "\n".join(errors)


def _typo_in_service_key(doc: dict[str, Any]) -> None:
    doc["services"]["sink"]["comand"] = doc["services"]["sink"].pop("command")


def _bad_depends_on_condition(doc: dict[str, Any]) -> None:
    doc["services"]["sink"]["depends_on"]["kafka"]["condition"] = "service_ready"


def _restart_not_a_string(doc: dict[str, Any]) -> None:
    doc["services"]["kafka"]["restart"] = ["unless-stopped"]


def _unknown_top_level_key(doc: dict[str, Any]) -> None:
    doc["service"] = doc.pop("services")


def _healthcheck_typo(doc: dict[str, Any]) -> None:
    doc["services"]["clickhouse"]["healthcheck"]["intervall"] = "10s"


@pytest.mark.parametrize(
    "breakage",
    [
        _typo_in_service_key,
        _bad_depends_on_condition,
        _restart_not_a_string,
        _unknown_top_level_key,
        _healthcheck_typo,
    ],
)
def test_broken_copies_fail_validation(
    validator: jsonschema.Draft7Validator,
    compose: dict[str, Any],
    breakage: Callable[[dict[str, Any]], None],
) -> None:
    broken = copy.deepcopy(compose)
    breakage(broken)
    assert schema_errors(validator, broken), f"{breakage.__name__}: the schema accepted a broken document"


def test_duplicate_keys_are_refused() -> None:
    with pytest.raises(yaml.constructor.ConstructorError, match="duplicate key 'image'"):
        load_yaml("services:\n  a:\n    image: x\n    image: y\n")
    # a `<<` merge overridden by an explicit key is not a duplicate
    doc = load_yaml("x-b: &b {image: x, init: true}\nservices:\n  a:\n    <<: *b\n    image: y\n")
    assert doc["services"]["a"] == {"image": "y", "init": True}


# -- 2. fleetwatch services: settings and commands -----------------------------------------------------


def test_expected_services_exist(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) >= INFRA_SERVICES | FLEETWATCH_SERVICES
    assert {name for name, _ in iter_fleetwatch(services)} == FLEETWATCH_SERVICES


def test_fleetwatch_variables_are_settings_fields(services: dict[str, dict[str, Any]]) -> None:
    problems = {}
    for name, svc in iter_fleetwatch(services):
        env = environment(svc)
        assert env.get("FLEETWATCH_KAFKA_BOOTSTRAP"), f"{name}: FLEETWATCH_KAFKA_BOOTSTRAP is not set"
        unknown = unknown_fleetwatch_vars(env)
        if unknown:
            problems[name] = unknown
    assert not problems, f"FLEETWATCH_* variables that are no Settings field: {problems}"


def test_fleetwatch_values_are_accepted_by_settings(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in list(os.environ):
        if var.startswith(ENV_PREFIX) and var[len(ENV_PREFIX) :].lower() in Settings.model_fields:
            monkeypatch.delenv(var)
    for name, svc in iter_fleetwatch(services):
        settings = settings_from_env(environment(svc))
        assert settings.kafka_bootstrap, name


def test_unknown_variable_check_catches_typos() -> None:
    assert unknown_fleetwatch_vars({"FLEETWATCH_KAFKA_BOOTSTRAP": "kafka:9092"}) == []
    assert unknown_fleetwatch_vars(
        {"FLEETWATCH_KAFKA_BOOTSTRAPS": "kafka:9092", "FLEETWATCH_sink_http_port": "1", "OTHER": "1"}
    ) == ["FLEETWATCH_KAFKA_BOOTSTRAPS", "FLEETWATCH_sink_http_port"]


def test_commands_are_fleetwatch_subcommands(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in iter_fleetwatch(services):
        assert svc.get("entrypoint") in (None, ["fleetwatch"], "fleetwatch"), f"{name}: entrypoint overridden"
        args = command_args(svc)
        assert args, f"{name}: no command (the image's default is --help)"
        parsed = parse_command(args)
        assert isinstance(parsed, argparse.Namespace), f"{name}: `fleetwatch {shlex.join(args)}`: {parsed}"
        assert callable(getattr(parsed, "handler", None)), f"{name}: {args} selects no command handler"


def test_command_check_rejects_unknown_commands() -> None:
    assert isinstance(parse_command(["probe"]), argparse.Namespace)
    assert isinstance(parse_command(["probes"]), str)
    assert isinstance(parse_command(["inventory", "load"]), str)  # FILE missing
    assert isinstance(parse_command(["sink", "--no-such-flag"]), str)


def test_each_worker_runs_its_command(services: dict[str, dict[str, Any]]) -> None:
    assert command_args(services["probe"]) == ["probe"]
    assert command_args(services["stream"]) == ["stream"]
    assert command_args(services["sink"]) == ["sink"]
    assert command_args(services["notify"]) == ["notify"]
    assert command_args(services["intake"]) == ["intake"]
    assert command_args(services["portal"]) == ["portal"]
    assert command_args(services["inventory-loader"])[:2] == ["inventory", "load"]


def test_inventory_loader_reads_a_mounted_fleet_file(services: dict[str, dict[str, Any]]) -> None:
    svc = services["inventory-loader"]
    parsed = parse_command(command_args(svc))
    assert isinstance(parsed, argparse.Namespace)
    assert parsed.prune is True
    container_file = Path(parsed.file)
    host_file = mounted_host_file(svc, container_file)
    if host_file is None:
        pytest.fail(f"inventory-loader: {container_file} is on no mounted volume")
    assert host_file.is_file(), f"{host_file} (mounted as {container_file}) does not exist"
    assert load_inventory_file(host_file), f"{host_file} lists no servers"
    restart = svc.get("restart") or "no"
    assert not restart.startswith(("always", "unless-stopped")), f"one-shot with restart {restart!r} loops"


def test_probe_workers_are_replicated(services: dict[str, dict[str, Any]]) -> None:
    replicas = int((services["probe"].get("deploy") or {}).get("replicas", 1))
    assert replicas >= 2
    assert "container_name" not in services["probe"], "container_name prevents replicas"


# -- 3. topology ---------------------------------------------------------------------------------------


def test_depends_on_refer_to_existing_services(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        for target, condition in depends_on(svc).items():
            assert target in services, f"{name} depends on unknown service {target!r}"
            assert target != name, f"{name} depends on itself"
            if condition == "service_healthy":
                assert (services[target].get("healthcheck") or {}).get("test"), (
                    f"{name} waits for {target} to be healthy, but {target} has no healthcheck"
                )


def test_fleetwatch_services_wait_for_a_healthy_broker(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in iter_fleetwatch(services):
        assert depends_on(svc).get("kafka") == "service_healthy", name
    assert depends_on(services["sink"]).get("clickhouse") == "service_healthy"


def test_kafka_broker_heap_is_bounded(services: dict[str, dict[str, Any]]) -> None:
    kafka = services["kafka"]
    heap_opts = environment(kafka).get("KAFKA_HEAP_OPTS") or ""
    xmx = re.findall(r"-Xmx(\d+[kKmMgG]?)", heap_opts)
    assert xmx, f"KAFKA_HEAP_OPTS has no -Xmx: {heap_opts!r}"
    heap = byte_size(xmx[-1])
    limit = memory_limit(kafka)
    assert limit is not None, "kafka has no memory limit"
    assert heap <= 0.75 * limit, f"broker heap {xmx[-1]} leaves too little of the {limit} byte limit"
    assert "kafka-broker-api-versions.sh" in " ".join(kafka["healthcheck"]["test"])


def test_kafka_image_is_the_local_brokers_version(services: dict[str, dict[str, Any]]) -> None:
    """Production runs the Kafka version the tests and `fleetwatch up` run (fleetwatch.kafka_local)."""
    image, _, tag = str(services["kafka"]["image"]).rpartition(":")
    assert image == "apache/kafka"
    assert tag == KAFKA_VERSION, f"kafka image {tag}, the local broker and the tests run {KAFKA_VERSION}"


def test_kafka_is_a_single_kraft_node_without_auto_create(services: dict[str, dict[str, Any]]) -> None:
    env = environment(services["kafka"])
    assert set((env.get("KAFKA_PROCESS_ROLES") or "").split(",")) == {"broker", "controller"}
    voters = (env.get("KAFKA_CONTROLLER_QUORUM_VOTERS") or "").split(",")
    assert voters == [f"{env.get('KAFKA_NODE_ID')}@kafka:9093"]
    assert env.get("KAFKA_AUTO_CREATE_TOPICS_ENABLE") == "false"
    for var in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    ):
        assert env.get(var) == "1", f"{var} must be 1 on a single node"


def test_every_service_has_a_memory_limit(services: dict[str, dict[str, Any]]) -> None:
    missing = [name for name, svc in services.items() if memory_limit(svc) is None]
    assert not missing, f"no memory limit: {missing}"


def test_workers_reach_kafka_on_an_advertised_listener(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in iter_fleetwatch(services):
        bootstrap = interpolate(environment(svc)["FLEETWATCH_KAFKA_BOOTSTRAP"] or "")
        for address in bootstrap.split(","):
            host, _, port = address.strip().rpartition(":")
            assert host in services, f"{name}: bootstrap host {host!r} is no service"
            advertised = environment(services[host]).get("KAFKA_ADVERTISED_LISTENERS") or ""
            netlocs = {urlsplit(listener).netloc for listener in advertised.split(",")}
            assert f"{host}:{port}" in netlocs, f"{name}: {address} is not advertised by {host}: {advertised}"


def test_sink_reaches_clickhouse_with_its_credentials(services: dict[str, dict[str, Any]]) -> None:
    sink_env = environment(services["sink"])
    ch_env = environment(services["clickhouse"])
    given = {"CLICKHOUSE_USER": "fw_user", "CLICKHOUSE_PASSWORD": "s3cret-Pass_1"}
    dsn = urlsplit(interpolate(sink_env["FLEETWATCH_CLICKHOUSE_DSN"] or "", given))
    assert dsn.scheme == "http"
    assert dsn.hostname == "clickhouse"
    assert dsn.port == 8123
    assert dsn.username == interpolate(ch_env["CLICKHOUSE_USER"] or "", given)
    assert dsn.password == interpolate(ch_env["CLICKHOUSE_PASSWORD"] or "", given)
    assert dsn.path in ("", "/"), "database goes in FLEETWATCH_CLICKHOUSE_DATABASE, not the DSN path"
    assert sink_env.get("FLEETWATCH_CLICKHOUSE_DATABASE") == ch_env.get("CLICKHOUSE_DB")
    assert sink_env.get("FLEETWATCH_SINK_HTTP_HOST") == "0.0.0.0"
    port = sink_env.get("FLEETWATCH_SINK_HTTP_PORT") or str(Settings.model_fields["sink_http_port"].default)
    published = [interpolate(str(p)) for p in services["sink"].get("ports", [])]
    assert any(p.split(":")[-1] == port for p in published), f"sink port {port} is not published: {published}"


def _setting_file(services: Mapping[str, dict[str, Any]], name: str, var: str) -> Path:
    """The host file behind the container path a service's FLEETWATCH_* file setting names."""
    value = environment(services[name]).get(var)
    assert value, f"{name}: {var} is not set"
    container_file = Path(interpolate(value))
    assert container_file.is_absolute(), f"{name}: {var}={value} is not an absolute container path"
    host_file = mounted_host_file(services[name], container_file)
    assert host_file is not None, f"{name}: {container_file} ({var}) is on no mounted volume"
    assert host_file.is_file(), f"{name}: {host_file} (mounted as {container_file}) does not exist"
    return host_file


def test_stream_reads_a_mounted_sla_policy_book(services: dict[str, dict[str, Any]]) -> None:
    book = load_policy_book(_setting_file(services, "stream", "FLEETWATCH_SLA_POLICY_FILE"))
    assert book.default.version
    assert book.customers, "the mounted policy book has no customer plan"


def test_notify_reads_a_mounted_contacts_directory(services: dict[str, dict[str, Any]]) -> None:
    directory = load_directory(_setting_file(services, "notify", "FLEETWATCH_CONTACTS_FILE"))
    assert directory.contacts, "the mounted contacts directory lists nobody"


def test_intake_and_portal_read_a_mounted_partner_directory(services: dict[str, dict[str, Any]]) -> None:
    from portal.directory import load_directory as load_partners

    for name in ("intake", "portal"):
        directory = load_partners(_setting_file(services, name, "FLEETWATCH_PARTNERS_FILE"))
        assert directory.partners, f"{name}: the mounted partner directory lists no partner"


# Workers that write local state under FLEETWATCH_DATA_DIR, and what they keep there.
STATEFUL_SERVICES = {
    "stream": "Faust's data dir",
    "intake": "the map of Message-IDs to cases (portal.intake.threads)",
}


def test_workers_with_local_state_keep_their_data_dir_on_a_named_volume(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    declared = compose.get("volumes") or {}
    owners: dict[str, str] = {}
    for name, kept in STATEFUL_SERVICES.items():
        data_dir = interpolate(environment(services[name]).get("FLEETWATCH_DATA_DIR") or "").rstrip("/")
        assert data_dir, f"{name}: FLEETWATCH_DATA_DIR is not set"
        volumes = [src for src, target in mounts(services[name]) if target.rstrip("/") == data_dir]
        assert volumes, f"{name}: {data_dir} ({kept}) is on no volume: it is lost with the container"
        assert volumes[0] in declared, f"{name}: {volumes[0]} at {data_dir} is no named (top-level) volume"
        assert owners.setdefault(volumes[0], name) == name, f"{name} and {owners[volumes[0]]} share a volume"


def test_portal_secret_is_required(services: dict[str, dict[str, Any]]) -> None:
    """Without a configured secret the portal keeps a random one in its container: sessions die with it."""
    value = environment(services["portal"]).get("FLEETWATCH_PORTAL_SECRET") or ""
    assert required_vars(value) == ["FLEETWATCH_PORTAL_SECRET"], (
        f"portal: FLEETWATCH_PORTAL_SECRET={value!r}; use ${{FLEETWATCH_PORTAL_SECRET:?...}}"
    )
    assert interpolate(value, {"FLEETWATCH_PORTAL_SECRET": "k3y"}) == "k3y"


# Services that verify case events' signatures (casefile.signing.load_keyring): the sink (chain_status), the
# portal (read model, case pages, GET /audit/keys), the intake (its read model of the case topic).
VERIFIERS = ("sink", "portal", "intake")
SIGNING_KEY = "FLEETWATCH_AUDIT_SIGNING_KEY"


def _volume_path(
    services: Mapping[str, dict[str, Any]], name: str, container_file: str, volumes: Mapping[str, Path]
) -> Path:
    """Where `container_file` of service `name` is on the host: a bind mount of the repo, or a named volume
    (standing for it: `volumes[volume]`)."""
    path = Path(container_file)
    for source, target in mounts(services[name]):
        if path.is_relative_to(target):
            rest = path.relative_to(target)
            return (volumes[source] if source in volumes else (REPO_ROOT / source).resolve()) / rest
    raise AssertionError(f"{name}: {container_file} is on no mounted volume")


def test_stream_signing_key_is_required(services: dict[str, dict[str, Any]]) -> None:
    """A key generated inside the stream container is one no verifier knows: every event would be forged."""
    for name in ("stream", "audit-keys"):
        value = environment(services[name]).get(SIGNING_KEY) or ""
        assert required_vars(value) == [SIGNING_KEY], (
            f"{name}: {SIGNING_KEY}={value!r}; use ${{{SIGNING_KEY}:?...}}"
        )
    holders = sorted(name for name, svc in services.items() if SIGNING_KEY in environment(svc))
    assert holders == ["audit-keys", "stream"], (
        "the private key goes to the signer (and the key publisher) only"
    )


def test_verifiers_get_the_signing_keys_public_key(
    services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """Run the one-shot `audit-keys` command as compose would (its files mapped to the host), then load
    every verifier's key list the way it does: each must hold the stream's signing key."""
    from casefile.signing import load_keyring, load_signer
    from fleetwatch.cli_case import _cmd_keys

    seed = "IiMkJSYnKCkqKywtLi8wMTIzNDU2Nzg5Ojs8PT4/QEE="  # base64 of a 32-byte seed, with a "/"
    given = {SIGNING_KEY: seed}
    volumes = {"audit-keys": tmp_path / "audit-keys"}
    volumes["audit-keys"].mkdir()

    def settings_of(name: str) -> Settings:
        env = environment(services[name])
        values = {
            key[len(ENV_PREFIX) :].lower(): interpolate(value, given)
            for key, value in env.items()
            if key.startswith(ENV_PREFIX) and value is not None
        }
        if "audit_keys_file" in values:
            values["audit_keys_file"] = str(_volume_path(services, name, values["audit_keys_file"], volumes))
        values["data_dir"] = str(tmp_path / f"data-{name}")  # the service's own data dir: no key there
        return Settings.model_validate(values)

    publisher = services["audit-keys"]
    assert depends_on(publisher).get("kafka") == "service_healthy"
    args = parse_command(command_args(publisher))
    assert isinstance(args, argparse.Namespace)
    args.output = str(_volume_path(services, "audit-keys", args.output, volumes))
    assert _cmd_keys(args, settings_of("audit-keys")) == 0

    signer = load_signer(settings_of("stream"))
    assert not (tmp_path / "data-stream").exists(), "the stream must use the configured key, not generate one"
    for name in VERIFIERS:
        assert depends_on(services[name]).get("audit-keys") == "service_completed_successfully", name
        env = environment(services[name])
        assert SIGNING_KEY not in env, f"{name} must not hold the private key"
        assert env.get("FLEETWATCH_AUDIT_KEYS_FILE"), f"{name}: no FLEETWATCH_AUDIT_KEYS_FILE"
        ring = load_keyring(settings_of(name))
        assert signer.key_id in ring.keys, f"{name} cannot verify the stream's signatures"
        assert ring.keys[signer.key_id].public == signer.public.public


def test_mount_lookup_fails_for_unmounted_paths(services: dict[str, dict[str, Any]]) -> None:
    assert mounted_host_file(services["notify"], Path("/etc/contacts.yaml")) is None
    assert mounted_host_file(services["sink"], Path("/config/contacts.yaml")) is None


METRICS_PORTS = {
    "probe": "FLEETWATCH_PROBE_METRICS_PORT",
    "stream": "FLEETWATCH_STREAM_METRICS_PORT",
    "notify": "FLEETWATCH_NOTIFY_METRICS_PORT",
}


def test_workers_serve_metrics_where_their_healthcheck_looks(services: dict[str, dict[str, Any]]) -> None:
    ports = {}
    for name, var in METRICS_PORTS.items():
        env = environment(services[name])
        assert env.get("FLEETWATCH_METRICS_HOST") == "0.0.0.0", f"{name}: /metrics unreachable from outside"
        port = env.get(var) or str(Settings.model_fields[var[len(ENV_PREFIX) :].lower()].default)
        assert port != "0", f"{name}: metrics are off"
        ports[name] = port
        check = " ".join(services[name]["healthcheck"]["test"])
        assert f"127.0.0.1:{port}/metrics" in check, f"{name}: healthcheck does not ask port {port}: {check}"
        assert port in [str(p) for p in services[name].get("expose", [])], f"{name}: port {port} not exposed"
    assert len(set(ports.values())) == len(ports), f"metrics ports collide: {ports}"


def test_notify_endpoints_are_placeholders(services: dict[str, dict[str, Any]]) -> None:
    env = environment(services["notify"])
    for var in ("FLEETWATCH_PAGER_URL", "FLEETWATCH_CALL_URL", "FLEETWATCH_WEBHOOK_URL"):
        value = env.get(var)
        assert value == f"${{{var}:-}}", f"notify: {var} must come from the environment, empty by default"
        assert interpolate(value, {var: "https://hooks.example/x"}) == "https://hooks.example/x"
    for var in ("FLEETWATCH_SMTP_HOST", "FLEETWATCH_SMTP_PORT"):
        assert (env.get(var) or "").startswith(f"${{{var}:-"), f"notify: {var} is not overridable"
    smtp_host = interpolate(env["FLEETWATCH_SMTP_HOST"] or "")
    if smtp_host == "host.docker.internal":  # the Docker host: Linux engines need the host-gateway alias
        assert "host.docker.internal:host-gateway" in services["notify"].get("extra_hosts", []), (
            "notify: SMTP host host.docker.internal without the host-gateway alias (unknown on Linux engines)"
        )
    settings = settings_from_env(env)
    assert settings.pager_url == settings.call_url == ""
    assert 0 < settings.smtp_port < 65536


def test_case_engine_and_notifier_outlive_a_restart(services: dict[str, dict[str, Any]]) -> None:
    for name in ("stream", "notify"):
        svc = services[name]
        assert svc.get("restart") in ("unless-stopped", "always"), f"{name}: not restarted"
        assert svc.get("stop_grace_period"), f"{name}: no grace period to finish its take and commit"
        assert "container_name" not in svc, f"{name}: container_name prevents scaling"


def test_interpolate_follows_compose_rules() -> None:
    assert interpolate("${A:-dflt}") == "dflt"
    assert interpolate("${A:?must be set}") == "x"
    assert interpolate("${A:-dflt}/${B}", {"A": "a", "B": "b"}) == "a/b"
    assert interpolate("$${A}") == "${A}"
    assert required_vars("${A:?set A}/${B:-b}/${C?unset only}/$${D:?x}") == ["A"]


# -- the image -----------------------------------------------------------------------------------------


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def test_dockerfile_builds_a_non_root_fleetwatch_image() -> None:
    instructions = _dockerfile_instructions()
    froms = [rest for kw, rest in instructions if kw == "FROM"]
    assert froms
    assert froms[0].startswith("python:3.11-slim")
    assert any(kw == "RUN" and re.search(r"\bpip install\b", rest) for kw, rest in instructions)
    entrypoints = [rest for kw, rest in instructions if kw == "ENTRYPOINT"]
    assert entrypoints
    assert json.loads(entrypoints[-1]) == ["fleetwatch"]
    users = [rest for kw, rest in instructions if kw == "USER"]
    assert users, "the image must switch to a non-root USER"
    assert users[-1].split(":")[0] not in ("root", "0"), "the image must run as a non-root user"
    env_names = {m.group(1) for kw, rest in instructions if kw == "ENV" for m in re.finditer(r"(\w+)=", rest)}
    assert unknown_fleetwatch_vars(dict.fromkeys(env_names)) == []


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    patterns = {
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", ".git", ".fleetwatch"} <= patterns
    assert any("__pycache__" in p for p in patterns)
