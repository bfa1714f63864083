"""`python -m sinks`: run the ClickHouse sink with settings from FLEETWATCH_* environment variables."""

from fleetcore.settings import Settings
from sinks.service import run

if __name__ == "__main__":
    run(Settings())
