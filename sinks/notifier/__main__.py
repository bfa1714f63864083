"""`python -m sinks.notifier`: run the notifier with settings from FLEETWATCH_* environment variables."""

from fleetcore.settings import Settings
from sinks.notifier.service import run

if __name__ == "__main__":
    run(Settings())
