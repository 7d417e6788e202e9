"""`crowdvlm <command> ...`: one table of subcommands, each imported only when it runs.

Every command lives in its own module that exposes ``main(argv: list[str]) -> int`` and parses its own
arguments (so `crowdvlm train grpo --config x.yaml` can hand its argv to TRL's parser). Nothing heavy
(torch, transformers) is imported here, which keeps `crowdvlm --help` instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from crowdvlm import __version__

# name -> ("module:function", one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("crowdvlm.data.cli:main", "convert datasets to manifests, synthesise data, stats, show"),
    "model": ("crowdvlm.modeling.cli:main", "build the tiny random-weight Qwen2.5-VL, inspect models"),
    "train": ("crowdvlm.train.cli:main", "SFT or GRPO (FGRPR / binary) from a YAML recipe"),
    "eval": ("crowdvlm.evaluate.cli:eval_main", "evaluate a model on manifests: metrics, report, plots"),
    "compare": ("crowdvlm.evaluate.cli:compare_main", "side-by-side tables of several eval runs"),
    "predict": ("crowdvlm.evaluate.cli:predict_main", "count the objects in a few images"),
    "demo": ("crowdvlm.demo.cli:main", "the CrowdVLM-R1 experiment in miniature, on a CPU"),
}


def _top_parser() -> argparse.ArgumentParser:
    lines = [f"  {name:<9} {help_}" for name, (_, help_) in COMMANDS.items()]
    parser = argparse.ArgumentParser(
        prog="crowdvlm",
        description="Teach vision-language models to count precisely (GRPO + FGRPR).",
        epilog="commands:\n"
        + "\n".join(lines)
        + "\n\nRun `crowdvlm <command> --help` for a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"crowdvlm {__version__}")
    parser.add_argument(
        "command", choices=sorted(COMMANDS), metavar="command", help="one of the commands below"
    )
    parser.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def resolve(command: str):
    """Import and return the ``main`` function behind ``command``."""
    target, _ = COMMANDS[command]
    module_name, func_name = target.split(":")
    return getattr(importlib.import_module(module_name), func_name)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = _top_parser()
    if not argv:
        parser.print_help()
        return 2
    ns = parser.parse_args(argv)
    return int(resolve(ns.command)(ns.args) or 0)


if __name__ == "__main__":
    sys.exit(main())
