"""The scenario loader refuses bad files with one line that names the field."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from scenarios import ScenarioError, load_scenario, parse_scenario, shipped


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "s.toml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('name = "x"\n[faults]\nwebhook_loss_p = 1.5\n', "faults.webhook_loss_p"),
        ('name = "x"\n[traffic]\nrate = 1\n', "traffic.rate"),
        ('name = "x"\n[traffic]\nbuyers = "many"\n', "traffic.buyers"),
        ('name = "x"\n[traffic]\ncurrencies = { XXX = 1 }\n', "traffic.currencies.XXX"),
        ('name = "x"\nduration_s = -1\n', "duration_s"),
        ('name = "x"\nspeed = 1\n', "speed"),
        ('name = "bad name"\n', "name"),
        ('name = "x"\n[traffic\n', "bad TOML"),
    ],
)
def test_bad_scenario_names_the_field(tmp_path: Path, text: str, field: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        load_scenario(_write(tmp_path, text))
    message = str(caught.value)
    assert field in message and "\n" not in message and message.startswith("s.toml: ")


def test_unknown_name_lists_the_shipped_ones() -> None:
    with pytest.raises(ScenarioError, match="happy_path"):
        load_scenario("no_such_scenario")


def test_every_shipped_scenario_round_trips_through_toml() -> None:
    for scenario in shipped():
        again = parse_scenario(tomllib.loads(scenario.to_toml()), source=scenario.source)
        assert again == scenario
