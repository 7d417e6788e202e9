"""`crowdvlm eval`, `crowdvlm compare` and `crowdvlm predict`.

Heavy imports (torch, transformers, openai) happen inside the functions, so `--help` is instant.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from crowdvlm.errors import RunError, UsageError
from crowdvlm.evaluate.backends.base import EvalItem
from crowdvlm.evaluate.cli_checks import (
    Parser,
    check_input_file,
    check_output_dir,
    non_negative_int,
    positive_float,
    positive_int,
)
from crowdvlm.evaluate.point_options import add_point_options, point_frame_rule, predicted_points
from crowdvlm.parsing import thinking_text
from crowdvlm.prompts import OUTPUTS, TEMPLATES, question_for

logger = logging.getLogger(__name__)

BACKENDS = ("hf", "vllm", "openai")
DEFAULT_QUESTION = question_for("people")
# The app imports the reader of the reasoning by this name; the one reader is crowdvlm.parsing's.
thinking_of = thinking_text


def _add_backend_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", required=True, help="model folder or Hub id (hf, vllm), or API model name (openai)"
    )
    parser.add_argument("--backend", choices=BACKENDS, default="hf", help="inference engine (default: hf)")
    parser.add_argument("--batch-size", type=positive_int, default=8, help="images per batch (default: 8)")
    parser.add_argument(
        "--max-new-tokens", type=positive_int, default=256, help="answer length budget (default: 256)"
    )
    parser.add_argument(
        "--prompt",
        choices=TEMPLATES,
        default="eval",
        help="prompt template (default: eval, the paper's evaluation one)",
    )
    parser.add_argument(
        "--output",
        choices=OUTPUTS,
        default="think",
        help="output instruction (default: think: <think>..<answer>)",
    )
    hf = parser.add_argument_group("hf / vllm backends")
    hf.add_argument("--device", default="auto", help="hf: cpu, cuda, cuda:1, ... (default: auto)")
    hf.add_argument("--dtype", default="auto", help="auto, bfloat16, float16 or float32 (default: auto)")
    hf.add_argument("--attn-implementation", default=None, help="hf: sdpa, eager, flash_attention_2, ...")
    hf.add_argument(
        "--min-pixels", type=positive_int, default=None, help="smallest image area after resizing (Qwen-VL)"
    )
    hf.add_argument(
        "--max-pixels", type=positive_int, default=None, help="largest image area after resizing (Qwen-VL)"
    )
    hf.add_argument(
        "--tensor-parallel-size", type=positive_int, default=1, help="vllm: GPUs per model (default: 1)"
    )
    api = parser.add_argument_group("openai backend")
    api.add_argument(
        "--base-url", default=None, help="OpenAI-compatible endpoint (default: $OPENAI_BASE_URL)"
    )
    api.add_argument("--api-key", default=None, help="API key (default: $OPENAI_API_KEY; never logged)")
    api.add_argument(
        "--concurrency", type=positive_int, default=8, help="requests in flight at most (default: 8)"
    )
    api.add_argument(
        "--request-timeout",
        type=positive_float,
        default=60.0,
        help="seconds one attempt may take in total, trickling responses included (default: 60)",
    )
    api.add_argument(
        "--max-retries", type=non_negative_int, default=5, help="retries on 429/5xx/timeouts (default: 5)"
    )


def make_backend(args: argparse.Namespace):
    """Build the backend named by ``args.backend`` from the parsed options.

    Raises:
        ImportError: vLLM is asked for but not installed.
        FileNotFoundError: the model folder does not exist.
        ValueError: the openai backend has no key, or an option is invalid.
    """
    # What the two local engines share: the answer budget, weights' dtype and Qwen-VL's image resizing.
    local = {
        "max_new_tokens": args.max_new_tokens,
        "dtype": args.dtype,
        "min_pixels": args.min_pixels,
        "max_pixels": args.max_pixels,
    }
    if args.backend == "hf":
        from crowdvlm.evaluate.backends.hf_backend import HFBackend

        return HFBackend.load(
            args.model, device=args.device, attn_implementation=args.attn_implementation, **local
        )
    if args.backend == "vllm":
        from crowdvlm.evaluate.backends.vllm_backend import VLLMBackend

        return VLLMBackend(args.model, tensor_parallel_size=args.tensor_parallel_size, **local)
    from crowdvlm.evaluate.backends.openai_backend import OpenAIBackend

    return OpenAIBackend(
        args.model,
        base_url=args.base_url,
        api_key=args.api_key,
        max_new_tokens=args.max_new_tokens,
        concurrency=args.concurrency,
        timeout=args.request_timeout,
        max_retries=args.max_retries,
    )


def _close(backend) -> None:
    close = getattr(backend, "close", None)
    if close is not None:
        close()


def _setup_logging(verbose: bool = False, level: int = logging.INFO) -> None:
    """Log to stderr; the HTTP stack's records (URLs, headers: credentials) are dropped even with -v."""
    from crowdvlm.evaluate.backends.credentials import install_http_log_filter

    logging.basicConfig(
        level=logging.DEBUG if verbose else level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    install_http_log_filter()
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # chatty at debug level


# -- crowdvlm eval ---------------------------------------------------------------------------------------


def eval_main(argv: list[str]) -> int:
    """`crowdvlm eval`: evaluate a model on manifests; writes predictions, metrics, report and plots.

    Raises:
        UsageError: bad options or input (exit 2), found before the model is loaded where possible.
        RunError: the evaluation failed (exit 1).
    """
    parser = Parser(
        prog="crowdvlm eval",
        description="Evaluate a model on one or more manifests: predictions.jsonl, metrics.json, report.md, plots.",
    )
    _add_backend_options(parser)
    parser.add_argument(
        "--data", required=True, action="append", help="manifest(s), comma-separated or repeated"
    )
    parser.add_argument("--out", required=True, type=Path, help="run directory to write")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run in --out (refused if the data or settings differ)",
    )
    parser.add_argument(
        "--strict", action="store_true", help="stop at the first image that cannot be evaluated"
    )
    parser.add_argument(
        "--strict-parse", action="store_true", help="read answers with the paper's strict rule"
    )
    parser.add_argument(
        "--limit", type=positive_int, default=None, help="evaluate only the first N images of each manifest"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="an evaluation recipe (YAML of these options, e.g. recipes/eval/countbenchqa.yaml); flags win",
    )
    add_point_options(parser, evaluation=True)
    from crowdvlm.evaluate.recipe import apply_recipe

    apply_recipe(parser, argv)
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)

    from crowdvlm.evaluate.run import evaluate, items_from_manifests

    manifests = [Path(m) for group in args.data for m in group.split(",") if m]
    for manifest in manifests:
        check_input_file(manifest, "--data", "manifest file")
    check_output_dir(args.out)
    items = items_from_manifests(manifests, template=args.prompt, output=args.output, limit=args.limit)
    if not items:
        raise UsageError(f"--data: no images in {', '.join(map(str, manifests))}")
    # What identifies the evaluation, checked on --resume (with the backend's and the items' fingerprint).
    settings = {
        "template": args.prompt,
        "output": args.output,
        "data": [str(m.resolve()) for m in manifests],
        "limit": args.limit,
    }
    from crowdvlm.runlock import RunLock

    with RunLock(args.out, what="crowdvlm eval"):  # one run per --out: refused before the model loads
        backend = _open_backend(args)
        try:
            rule = point_frame_rule(args, backend) if args.output == "points" else None
            metrics = evaluate(
                backend,
                items,
                args.out,
                batch_size=args.batch_size,
                resume=args.resume,
                strict=args.strict,
                parse_strict=args.strict_parse,
                settings=settings,
                progress=not args.no_progress,
            )
        finally:
            _close(backend)
        if args.output == "points":
            from crowdvlm.evaluate.localisation import write_localisation

            summary = write_localisation(
                args.out, manifests, args.point_frame, rule, radii=args.radii, overlays=args.overlays
            )
            located = summary["overall"][f"r{args.radii[-1]:g}"]
            print(
                f"localisation: F1 @{args.radii[-1]:g}px {_num(located['f1'])} over {summary['overall']['n']} "
                "images"
            )
    overall = metrics["overall"]
    if overall["errors"] and not overall["n"] + overall["unlabelled"]:
        raise RunError(f"none of the images could be evaluated: {_first_error(args.out)}")
    print(
        f"{overall['n']} images scored ({overall['errors']} errors): MAE {_num(overall['mae'])}, "
        f"RMSE {_num(overall['rmse'])}, accuracy {_num(overall['accuracy'], pct=True)}, "
        f"unparsed {_num(overall['parse_failure_rate'], pct=True)} -> {args.out / 'report.md'}"
    )
    return 0


def _first_error(out: Path) -> str:
    from crowdvlm.evaluate.predictions import PREDICTIONS_FILE, latest_by_id, read_predictions

    latest = list(latest_by_id(read_predictions(out / PREDICTIONS_FILE)).values())
    errors = [p for p in latest if p.error]
    first = f"{errors[0].id}: {errors[0].error}"
    return f"{len(errors)} of {len(latest)} failed, the first {first} (all in {out / PREDICTIONS_FILE})"


def _open_backend(args: argparse.Namespace):
    """:func:`make_backend`, its failures to start turned into one-line :class:`UsageError`s."""
    if args.backend != "openai" and Path(args.model).is_file():
        raise UsageError(
            f"--model {args.model} is a file; expected a model folder (config.json, weights) or Hub id"
        )
    try:
        return make_backend(args)
    except ImportError as err:
        raise UsageError(f"--backend {args.backend}: {err}") from err
    except UsageError:
        raise
    except (FileNotFoundError, ValueError) as err:  # no such model folder, no API key, ...
        raise UsageError(str(err)) from err


def _num(value, pct: bool = False) -> str:
    """A metric on the console's summary line: the report's rule, "n/a" where undefined."""
    from crowdvlm.evaluate.report import format_value

    return format_value(value, "pct" if pct else "float", missing="n/a")


# -- crowdvlm compare ------------------------------------------------------------------------------------


def compare_main(argv: list[str]) -> int:
    """`crowdvlm compare`: side-by-side tables of several eval runs, with bootstrap CIs of MAE differences."""
    parser = Parser(
        prog="crowdvlm compare",
        description="Compare eval runs: MAE / RMSE / accuracy per dataset and per count bucket; MAE differences "
        "against the first run with paired bootstrap 95%% confidence intervals.",
    )
    parser.add_argument(
        "runs",
        nargs="+",
        help="eval run directories (the first is the baseline); DIR1,DIR2,... is one model's group of runs, "
        "one per seed (cells: means over seeds; intervals resample seeds and images)",
    )
    parser.add_argument("--out", required=True, type=Path, help="where to write compare.md/.json/.png")
    parser.add_argument("--names", default=None, help="comma-separated display names, one per run")
    parser.add_argument(
        "--bootstrap", type=positive_int, default=2000, help="bootstrap resamples (default: 2000)"
    )
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    args = parser.parse_args(argv)
    _setup_logging()

    from crowdvlm.evaluate.compare import write_comparison

    names = args.names.split(",") if args.names else None
    groups = [[Path(d) for d in arg.split(",") if d] for arg in args.runs]
    if names is not None and len(names) != len(groups):
        raise UsageError(f"--names: {len(names)} names for {len(groups)} runs")
    check_output_dir(args.out)
    write_comparison(groups, args.out, names=names, n_bootstrap=args.bootstrap, seed=args.seed)
    print(f"wrote {args.out / 'compare.md'}, compare.json, compare.png")
    return 0


# -- crowdvlm predict ------------------------------------------------------------------------------------


def predict_main(argv: list[str]) -> int:
    """`crowdvlm predict`: count the objects in a few images."""
    parser = Parser(prog="crowdvlm predict", description="Count the objects in images.")
    _add_backend_options(parser)
    parser.add_argument("images", nargs="+", type=Path, help="image files")
    parser.add_argument(
        "--question", default=DEFAULT_QUESTION, help=f"what to ask (default: {DEFAULT_QUESTION!r})"
    )
    parser.add_argument("--show-thinking", action="store_true", help="also print the model's reasoning")
    parser.add_argument("--json", action="store_true", help="print one JSON object per image")
    parser.add_argument(
        "--strict-parse", action="store_true", help="read answers with the paper's strict rule"
    )
    add_point_options(parser)
    parser.add_argument(
        "--points",
        type=Path,
        default=None,
        metavar="DIR",
        help="ask for point answers (--output points) and write each image with its points drawn to DIR",
    )
    args = parser.parse_args(argv)
    _setup_logging(level=logging.WARNING)
    if args.points is not None:
        args.output = "points"

    from crowdvlm.evaluate.run import answer_batches
    from crowdvlm.prompts import build_prompt

    prompt = build_prompt(args.question, template=args.prompt, output=args.output)
    items = [EvalItem(str(path), "predict", path, prompt) for path in args.images]
    backend = _open_backend(args)
    failed = 0
    try:
        rule = point_frame_rule(args, backend) if args.output == "points" else None
        for batch in answer_batches(
            backend, items, batch_size=args.batch_size, parse_strict=args.strict_parse
        ):
            for p in batch:
                failed += p.error is not None
                points = None
                if args.output == "points" and not p.error:
                    points = predicted_points(Path(p.image), p.text, args, rule)
                _print_prediction(p.id, p.pred, p.text, p.error, args, points)
    finally:
        _close(backend)
    return 1 if failed else 0


def _print_prediction(
    image: str,
    count: int | None,
    text: str,
    error: str | None,
    args: argparse.Namespace,
    points: list[list[float]] | None = None,
) -> None:
    thinking = thinking_text(text) if args.show_thinking else None
    if args.json:
        row = {"image": image, "count": count, "text": text, "error": error}
        if points is not None:
            row["points"] = points
        if args.show_thinking:
            row["thinking"] = thinking
        print(json.dumps(row, ensure_ascii=False))
        return
    if error:
        print(f"{image}\terror: {error}")
        return
    print(f"{image}\t{count if count is not None else 'unparsed: ' + repr(text[:200])}")
    if points is not None:
        print(f"  {len(points)} points" + (f" -> {args.points}" if args.points is not None else ""))
    if args.show_thinking:
        print(f"  thinking: {thinking if thinking is not None else '(none)'}")
