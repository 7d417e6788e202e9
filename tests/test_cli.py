"""The CLI: help is instant (no torch import), every command is wired and answers --help."""

import subprocess
import sys

import pytest

from crowdvlm import __version__
from crowdvlm.cli import COMMANDS, main


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "crowdvlm", *args], capture_output=True, text=True, timeout=300
    )


def test_help_lists_commands_without_importing_torch():
    code = "import sys; from crowdvlm.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\nprint('TORCH', 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    for name in COMMANDS:
        assert name in out.stdout
    assert "TORCH False" in out.stdout


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_unknown_command_fails():
    result = run_cli("frobnicate")
    assert result.returncode != 0
    assert "invalid choice" in result.stderr


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(command):
    result = run_cli(command, "--help")
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout
