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


def test_errors_become_one_line_and_documented_exit_codes(monkeypatch, capsys):
    """Exceptions escaping a command: one stderr line, the code from crowdvlm.errors, no traceback."""
    from crowdvlm import cli
    from crowdvlm.errors import RunError, UsageError

    cases = [
        (UsageError("recipe.yaml: key 'lr' must be > 0"), 2),
        (RunError("endpoint never answered"), 1),
        (OSError(28, "No space left on device", "runs/x/predictions.jsonl"), 1),
        (KeyboardInterrupt(), 130),
        (ZeroDivisionError("boom"), 1),
    ]
    for err, code in cases:

        def fail(argv, err=err):
            raise err

        monkeypatch.setattr(cli, "resolve", lambda name, fail=fail: fail)
        assert cli.main(["eval"]) == code
        out = capsys.readouterr().err
        assert out.count("\n") == 1 and out.startswith("crowdvlm eval: error: "), out
        assert "Traceback" not in out
    assert "runs/x/predictions.jsonl" in _last_error(monkeypatch, capsys, cases[2][0])
    monkeypatch.setattr(cli, "resolve", lambda name: lambda argv: (_ for _ in ()).throw(RunError("x")))
    with pytest.raises(RunError):
        cli.main(["-v", "eval"])


def _last_error(monkeypatch, capsys, err) -> str:
    from crowdvlm import cli

    def fail(argv):
        raise err

    monkeypatch.setattr(cli, "resolve", lambda name: fail)
    cli.main(["eval"])
    return capsys.readouterr().err


def test_every_command_accepts_both_option_spellings(capsys):
    """`crowdvlm eval --min_pixels` works as `--min-pixels` does (train's HF parser accepts both already)."""
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "synth", "--help"])
    assert exit_info.value.code == 0
    assert main(["data", "synth", "--out", "x", "--n", "0", "--min_count", "-1"]) != 0
    err = capsys.readouterr().err
    assert "unrecognized arguments" not in err and "min" in err.lower()
