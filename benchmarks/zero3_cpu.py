"""A ZeRO-3 accelerate config for CPU runs that really partitions every parameter, and the ``accelerate launch``
command that runs a config in 2 processes (test and benchmark scaffolding).

The tiny models' parameters are all below DeepSpeed's persistence threshold, so a shipped ZeRO-3 config would keep
them whole on every rank; :func:`write_zero3_cpu_variant` writes a copy that splits them, as a 3B model's are.
:func:`launch_command` is the one ``accelerate launch`` command line of the multi-process tests and benchmarks. Used
by the 2-process tests (through ``tests/launch_helpers.py``) and ``benchmarks/grpo_cluster.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from crowdvlm.atomic import atomic_write_json, atomic_write_text

#: ZeRO-3 keeps parameters under ``stage3_param_persistence_threshold`` elements (DeepSpeed default 1e5) whole
#: on every rank; the tiny model's all are. These settings partition every parameter, as a 3B model's are.
PARTITION_EVERYTHING = {
    "stage3_param_persistence_threshold": 0,
    "stage3_prefetch_bucket_size": 0,
    "stage3_max_live_parameters": 100_000,
    "reduce_bucket_size": 4096,
}


def write_zero3_cpu_variant(config_file: str | Path, out_dir: str | Path, num_processes: int = 2) -> Path:
    """A copy of a shipped ZeRO-3 accelerate config for a CPU run with every parameter really partitioned.

    accelerate takes no DeepSpeed thresholds on its command line and refuses a ``deepspeed_config_file``
    beside ``zero_stage`` & co., so the copy moves the shipped settings (stage, offload, 16-bit save) into a
    DeepSpeed JSON with :data:`PARTITION_EVERYTHING` added; everything else stays as shipped. Launch it with
    ``--mixed_precision no`` (precision comes from the recipe). DeepSpeed's CPU accelerator talks over gloo.

    Args:
        config_file: e.g. ``recipes/accelerate/zero3.yaml``.
        out_dir: where ``zero3_cpu.yaml`` and ``zero3_cpu.json`` are written.
        num_processes: processes of the copy.

    Returns:
        The path of the accelerate config to pass to ``accelerate launch --config_file``.
    """

    import yaml

    config = yaml.safe_load(Path(config_file).read_text())
    shipped = config.get("deepspeed_config") or {}
    if config.get("distributed_type") != "DEEPSPEED" or int(shipped.get("zero_stage", 0)) != 3:
        raise ValueError(f"{config_file}: expected a DeepSpeed ZeRO-3 accelerate config")
    zero = {
        "stage": 3,
        "offload_optimizer": {"device": shipped.get("offload_optimizer_device", "none")},
        "offload_param": {"device": shipped.get("offload_param_device", "none")},
        "stage3_gather_16bit_weights_on_model_save": bool(shipped.get("zero3_save_16bit_model", False)),
        **PARTITION_EVERYTHING,
    }
    auto = (
        "train_batch_size",
        "train_micro_batch_size_per_gpu",
        "gradient_accumulation_steps",
        "gradient_clipping",
    )
    ds_config = {**dict.fromkeys(auto, "auto"), "bf16": {"enabled": "auto"}, "zero_optimization": zero}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "zero3_cpu.json"
    atomic_write_json(json_path, ds_config)
    config["deepspeed_config"] = {
        "deepspeed_multinode_launcher": shipped.get("deepspeed_multinode_launcher", "standard"),
        "deepspeed_config_file": str(json_path.resolve()),
        "zero3_init_flag": bool(shipped.get("zero3_init_flag", True)),
    }
    config.pop("mixed_precision", None)  # with a DeepSpeed file it must come from the command line
    config["num_processes"] = num_processes
    yaml_path = out / "zero3_cpu.yaml"
    atomic_write_text(yaml_path, yaml.safe_dump(config, sort_keys=False))
    return yaml_path


def launch_command(config_file: str | Path, *target: str, num_processes: int = 2) -> list[str]:
    """``accelerate launch`` of ``target`` in ``num_processes`` processes of this interpreter with ``config_file``.

    Precision comes from the recipe (``--mixed_precision no``, as :func:`write_zero3_cpu_variant`'s configs need)
    and the main process takes a free port (``--main_process_port 0``), so launches side by side do not collide.

    Args:
        config_file: an accelerate config (e.g. ``recipes/accelerate/ddp.yaml`` or a ZeRO-3 CPU copy).
        target: what each process runs: a script and its arguments, or ``-m``, a module and its arguments.
        num_processes: processes to launch.

    Returns:
        The command line, for ``subprocess``.
    """
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(config_file),
        "--num_processes",
        str(num_processes),
        "--mixed_precision",
        "no",
        "--main_process_port",
        "0",
        *target,
    ]
