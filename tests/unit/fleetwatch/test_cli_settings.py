"""The README's settings table is generated from Settings and lists every setting."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field, SecretStr

from fleetcore.errors import ConfigError
from fleetcore.settings import Settings
from fleetwatch.cli import main
from fleetwatch.cli_settings import (
    BEGIN,
    END,
    current_values,
    readme_table,
    settings_table,
    with_table,
)

README = Path(__file__).resolve().parents[3] / "README.md"


def test_readme_settings_table_is_up_to_date() -> None:
    committed = readme_table(README.read_text(encoding="utf-8"))
    assert committed == settings_table(), (
        "README.md's settings table is out of date: run `fleetwatch settings --update-readme` and commit it"
    )


def test_the_table_has_a_row_for_every_setting_with_its_default() -> None:
    table = settings_table()
    for name in Settings.model_fields:
        assert f"| `FLEETWATCH_{name.upper()}` |" in table
    for row in (
        "| `FLEETWATCH_LOCAL_KAFKA_PORT` | `9092` |",
        "| `FLEETWATCH_LOCAL_KAFKA_CONTROLLER_PORT` | `9093` |",
        "| `FLEETWATCH_STREAM_WEB_PORT` | `6066` |",
        "| `FLEETWATCH_ANALYSTS_PORT` | `0` |",
        "| `FLEETWATCH_ANALYSTS_PASSWORD` | empty |",
        "| `FLEETWATCH_DATA_DIR` | `~/.local/share/fleetwatch` |",
        "| `FLEETWATCH_SLA_POLICY_FILE` | none |",
        "| `FLEETWATCH_REDUNDANCY_AWARE` | `false` |",
    ):
        assert row in table


def test_a_new_setting_makes_the_table_stale() -> None:
    class More(Settings):
        brand_new_port: int = Field(default=1234, description="A port | with a pipe.")

    table = settings_table(More)
    assert table != settings_table()
    assert "| `FLEETWATCH_BRAND_NEW_PORT` | `1234` | A port \\| with a pipe. |" in table


def test_update_readme_replaces_only_the_block(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nbefore\n{BEGIN}\n| old |\n{END}\nafter\n")
    assert main(["settings", "--update-readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("# title\n\nbefore\n")
    assert text.endswith(f"{END}\nafter\n")
    assert readme_table(text) == settings_table()
    assert with_table(text, settings_table()) == text  # idempotent
    with pytest.raises(ConfigError, match="markers"):
        readme_table("no table here")


def test_current_values_mask_secrets() -> None:
    values = current_values(Settings(analysts_password=SecretStr("s3cret"), analysts_port=8123))
    assert "FLEETWATCH_ANALYSTS_PORT=8123" in values
    assert "FLEETWATCH_ANALYSTS_PASSWORD=**********" in values
    assert not any("s3cret" in line for line in values)
