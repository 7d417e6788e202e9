"""`crowdvlm model ...`: build a tiny random-weight Qwen VLM, merge LoRA adapters, inspect a model folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from crowdvlm.argparsing import CommandParser
from crowdvlm.errors import UsageError
from crowdvlm.modeling.tiny_families import FAMILIES, FAMILY_NAMES


def _parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="crowdvlm model", description="Build or inspect models.")
    sub = parser.add_subparsers(dest="action", required=True, metavar="action")

    tiny = sub.add_parser("tiny", help="build a tiny random-weight Qwen VLM in Hugging Face format")
    tiny.add_argument("--out", required=True, help="folder to write (created if missing; must be empty)")
    tiny.add_argument("--overwrite", action="store_true", help="write into a folder that is not empty")
    tiny.add_argument(
        "--family",
        choices=FAMILIES,
        default="qwen2_5_vl",
        help="architecture: qwen2_5_vl (default), qwen3_vl (deepstack vision), qwen3_5 (hybrid linear attention)",
    )
    tiny.add_argument("--seed", type=int, default=0, help="weight-initialisation seed (default 0)")
    tiny.add_argument("--hidden-size", type=int, default=64, help="text decoder width (default 64)")
    tiny.add_argument("--num-layers", type=int, default=2, help="text decoder layers (default 2)")
    tiny.add_argument("--vision-depth", type=int, default=2, help="vision tower blocks (default 2)")
    tiny.add_argument(
        "--min-pixels",
        type=int,
        default=None,
        help="smallest image area (default: 2x2 image tokens, 3136 for qwen2_5_vl)",
    )
    tiny.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        help="largest image area (default: 4x4 image tokens, 12544 for qwen2_5_vl)",
    )

    merge = sub.add_parser("merge", help="merge a LoRA run or checkpoint into its base model (for vLLM)")
    merge.add_argument("adapter", help="folder with adapter_config.json (a LoRA run's output or checkpoint)")
    merge.add_argument("--out", required=True, help="folder to write the merged model and processor to")
    merge.add_argument("--overwrite", action="store_true", help="write into a folder that is not empty")
    merge.add_argument(
        "--base", default=None, help="base model (default: the one named in the adapter config)"
    )

    info = sub.add_parser("info", help="parameter counts, architecture and processor settings of a model")
    info.add_argument("path", help="model folder or Hub id")
    return parser


def check_new_folder(out: str | Path, overwrite: bool) -> None:
    """Refuse to write a model into a file, or into a folder that holds something, unless ``overwrite``.

    Raises:
        UsageError: naming the folder and the option that allows it.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file: expected a folder to write the model to")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UsageError(f"--out {out} is not empty: pass --overwrite to write the model into it anyway")


def main(argv: list[str]) -> int:
    """Run one ``crowdvlm model`` action; errors raise and ``crowdvlm.cli`` prints them as one line."""
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except FileNotFoundError as err:  # a model or adapter folder that is not there: bad input
        raise UsageError(str(err)) from err


def _run(args) -> int:
    if args.action == "tiny":
        check_new_folder(args.out, args.overwrite)
        from crowdvlm.modeling.tiny import build_tiny_model

        out = build_tiny_model(
            args.out,
            family=args.family,
            seed=args.seed,
            hidden_size=args.hidden_size,
            num_layers=args.num_layers,
            vision_depth=args.vision_depth,
            min_pixels=args.min_pixels,
            max_pixels=args.max_pixels,
        )
        print(f"tiny {FAMILY_NAMES[args.family]} written to {out}")
        return 0

    if args.action == "merge":
        from crowdvlm.modeling import merge_lora

        check_new_folder(args.out, args.overwrite)
        print(f"merged model written to {merge_lora(args.adapter, args.out, base=args.base)}")
        return 0

    from crowdvlm.modeling import check_model_path, count_parameters, load_model_and_processor

    check_model_path(args.path)
    model, processor = load_model_and_processor(args.path)
    summary = {
        "architecture": type(model).__name__,
        "processor": type(processor).__name__,
        "parameters": count_parameters(model),
        "vocab_size": len(processor.tokenizer),
        "image_size": dict(getattr(processor.image_processor, "size", {}) or {}),
    }
    print(json.dumps(summary, indent=2))
    return 0
