"""The documentation is tested where it shows commands: every `crowdvlm ...` line in a ```bash block of the
README or a docs/ page names a command that exists, and every option it uses is one that command's
`--help` lists. Every relative link points to a file in the repository."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from crowdvlm.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Commands whose first argument names a sub-command with options of its own.
WITH_SUBCOMMANDS = {"data", "model", "train", "experiment"}
_BLOCK = re.compile(r"```bash\n(.*?)```", re.S)
_OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9_-]*")


def documented_commands() -> list[tuple[str, tuple[str, ...], list[str]]]:
    """(page, command words, options used) for every documented `crowdvlm` invocation."""
    found = []
    for page in PAGES:
        for block in _BLOCK.findall(page.read_text(encoding="utf-8")):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.split(" #", 1)[0].strip()
                if line.startswith("#") or "crowdvlm " not in line:
                    continue
                rest = line[line.index("crowdvlm ") + len("crowdvlm ") :]
                words = shlex.split(re.sub(r"\[[^\]]*\]", "", rest))
                if not words or words[0] not in COMMANDS:
                    continue  # `crowdvlm` inside a path or prose, not an invocation
                command = (words[0],)
                if words[0] in WITH_SUBCOMMANDS and len(words) > 1 and not words[1].startswith("-"):
                    command = (words[0], words[1])
                options = [o for o in _OPTION.findall(rest) if o not in ("--help", "--config_file")]
                found.append((page.name, command, options))
    return found


def test_the_docs_show_commands():
    commands = {c for _, c, _ in documented_commands()}
    assert {("eval",), ("compare",), ("predict",), ("train", "grpo"), ("data", "convert")} <= commands


@pytest.mark.parametrize("command", sorted({c for _, c, _ in documented_commands()}), ids=" ".join)
def test_documented_command_exists_and_takes_its_options(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    help_text = capsys.readouterr().out
    assert exit_info.value.code in (0, None), f"crowdvlm {' '.join(command)} --help failed"
    used = {(page, o) for page, c, options in documented_commands() if c == command for o in options}
    # argparse folds long lines, so compare against the help with whitespace removed around each option
    missing = sorted({f"{o} ({page})" for page, o in used if o not in help_text})
    assert not missing, f"crowdvlm {' '.join(command)} --help does not list: {missing}"


def test_relative_links_point_to_files():
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if "://" in target:
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, broken
