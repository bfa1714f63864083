# fleetwatch worker image: one image for every `fleetwatch` command (probe, stream, notify, sink, inventory load,
# case, maintenance, audit, ...).
#
#   docker build -t fleetwatch:local .
#   docker run --rm fleetwatch:local --help
#
# Everything is installed at build time (the runtime lock, then the project from the repo copy); nothing is
# downloaded when a container runs. `fleetwatch up` (local broker from Maven jars) is a developer command and
# is not meant to run in this image: production uses docker-compose.yml (Kafka and ClickHouse as their own
# services).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# Non-root runtime user with a fixed uid/gid (volume ownership, Kubernetes runAsNonRoot).
RUN groupadd --system --gid 10001 fleetwatch \
    && useradd --system --uid 10001 --gid fleetwatch --home-dir /home/fleetwatch --create-home \
        --shell /usr/sbin/nologin fleetwatch \
    && install -d -o fleetwatch -g fleetwatch -m 0750 /var/lib/fleetwatch

# The runtime lock (`make lock` writes it from pyproject.toml; exact versions, hash-checked) in a layer of its
# own, rebuilt only when the lock changes; then the project from the build context without resolving anything
# (.dockerignore keeps .venv, .git, caches and local state out of it). `pip check` fails the build if the lock
# does not satisfy the project's requirements. The source copy is removed afterwards.
COPY requirements/runtime.txt /src/requirements/runtime.txt
RUN pip install --require-hashes -r /src/requirements/runtime.txt
COPY . /src
RUN pip install --no-deps /src \
    && rm -rf /src \
    && pip check \
    && fleetwatch --help > /dev/null

# Local state (Faust worker data, the embedded store if no ClickHouse DSN is given) goes here.
ENV FLEETWATCH_DATA_DIR=/var/lib/fleetwatch
WORKDIR /var/lib/fleetwatch

# /metrics of the probe (9101), stream (9102) and notify (9104) workers, on 0.0.0.0 when FLEETWATCH_METRICS_HOST
# says so (docker-compose.yml does); 9103: sink query API and /metrics. Configuration files (fleet, SLA policy
# book, contacts directory) are not in the image: mount them (docker-compose.yml mounts ./examples at /config).
EXPOSE 9101 9102 9103 9104 2526 8080

USER 10001:10001

ENTRYPOINT ["fleetwatch"]
CMD ["--help"]
