"""`crowdvlm train sft|grpo --config RECIPE.yaml [--key value ...]`: parse, check, train.

Configuration errors (unknown keys, missing model or data, a batch that ``num_generations`` does not divide,
a manifest without usable rows or ground truth) are reported as one line before any model is loaded, and the
command exits with status 2.
"""

from __future__ import annotations

import sys

USAGE = """usage: crowdvlm train {sft,grpo} --config RECIPE.yaml [--key value ...]

  sft    supervised fine-tuning on manifests (targets: <think>..</think><answer>N</answer> or <answer>N</answer>)
  grpo   GRPO with rewards chosen by name (the paper: fgrpr + format; the baseline: binary + format)

`crowdvlm train sft --help` / `crowdvlm train grpo --help` list every key (ours, then TRL's)."""


def _runner(kind: str):
    if kind == "sft":
        from crowdvlm.train.sft import run_sft

        return run_sft
    from crowdvlm.train.grpo import run_grpo

    return run_grpo


def run_command(kind: str, argv: list[str]) -> int:
    """Parse ``argv`` into a job of ``kind`` and run it; configuration errors print one line and return 2."""
    from crowdvlm.train.cluster import release_process_group
    from crowdvlm.train.common import setup_logging
    from crowdvlm.train.config import ConfigError, parse_job

    try:
        job = parse_job(kind, argv)
        setup_logging(job)  # the CLI owns logging; run_sft/run_grpo called from Python leave it alone
        _runner(kind)(job)  # data is checked (ConfigError) before the model is loaded
        release_process_group()  # torchrun children must not exit with gloo threads alive
    except ConfigError as err:
        print(f"crowdvlm train {kind}: error: {err}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    kind, rest = argv[0], argv[1:]
    if kind not in ("sft", "grpo"):
        print(f"crowdvlm train: unknown kind {kind!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    return run_command(kind, rest)
