"""The `foreseer` command line dispatches to one sub-command module at a time."""

import sys

import pytest

from foreseer import cli


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert name in out


def test_an_unknown_command_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["nope"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err


def test_only_the_chosen_command_is_imported(capsys: pytest.CaptureFixture[str]) -> None:
    sys.modules.pop("foreseer.simulator.backtesting", None)
    assert cli.main(["crds"]) == 0
    assert "kind: CustomResourceDefinition" in capsys.readouterr().out
    assert "foreseer.simulator.backtesting" not in sys.modules
