"""`crowdvlm train sft|grpo --config RECIPE.yaml [--key value ...]`: parse, check, train.

Configuration errors (unknown keys, missing model or data, a batch that ``num_generations`` does not divide,
a manifest without usable rows or ground truth, images the processor would reject) are raised before any
model is loaded; ``crowdvlm.cli.main`` prints them as one line and exits with status 2.
"""

from __future__ import annotations

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
    """Parse ``argv`` into a job of ``kind`` and run it.

    Configuration errors raise :class:`~crowdvlm.train.errors.ConfigError` (a ``UsageError``: exit 2), which
    ``crowdvlm.cli.main`` prints as one line. ``--resume`` of a finished run says so and trains nothing.
    """
    from crowdvlm.train.cluster import release_process_group
    from crowdvlm.train.common import finished_run, setup_logging
    from crowdvlm.train.config import parse_job

    job = parse_job(kind, argv)
    setup_logging(job)  # the CLI owns logging; run_sft/run_grpo called from Python leave it alone
    with _output_lock(job):
        done = finished_run(job)
        if done is not None:
            print(
                f"crowdvlm train {kind}: {job.output_dir} is complete ({done.global_step} steps, final model "
                "saved): nothing to resume; raise --max_steps to train further"
            )
            return 0
        _runner(kind)(job)  # data is checked (ConfigError) before the model is loaded
    release_process_group()  # torchrun children must not exit with gloo threads alive
    return 0


def _output_lock(job):
    """One run per ``output_dir``: the lock is taken by the main process of a run (rank 0), so the processes
    of one multi-process run share it and a second run's main process is refused before loading anything."""
    import contextlib

    from crowdvlm.runlock import RunLock

    if job.training.process_index != 0:
        return contextlib.nullcontext()
    return RunLock(job.output_dir, what=f"crowdvlm train {job.kind}")


def main(argv: list[str]) -> int:
    from crowdvlm.errors import UsageError

    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    kind, rest = argv[0], argv[1:]
    if kind not in ("sft", "grpo"):
        raise UsageError(f"unknown kind {kind!r}: expected sft or grpo (`crowdvlm train --help`)")
    return run_command(kind, rest)
