"""Watching GRPO count: 2 tiny GRPO steps write, every ``sample_completions_steps``, a few groups to TensorBoard
(the image, the true count, each completion, its parsed count and each reward), read back from the event file."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from PIL import Image

from crowdvlm.train.config import parse_job

TINY_GRPO = Path(__file__).resolve().parents[2] / "recipes" / "tiny" / "grpo_fgrpr.yaml"


@pytest.fixture(scope="module")
def grpo_run(tmp_path_factory):
    from crowdvlm.data.synth import generate
    from crowdvlm.demo.base_model import BASE_DIR
    from crowdvlm.train import run_grpo

    tmp = tmp_path_factory.mktemp("tb-samples")
    manifest = generate(
        tmp / "data", n=8, style="dots", min_count=2, max_count=6, size=(112, 112), progress=False
    )
    job = parse_job(
        "grpo",
        recipe=TINY_GRPO,
        model_name_or_path=str(BASE_DIR),  # the demo's base answers <answer>N</answer>: counts to parse
        dataset=[str(manifest)],
        output_dir=str(tmp / "run"),
        max_steps=2,
        num_generations=2,
        per_device_train_batch_size=4,  # 2 groups of 2 completions per step
        max_completion_length=12,
        sample_completions_steps=1,
        num_sample_groups=2,
        logging_steps=1,
        save_strategy="no",
        report_to=["tensorboard"],
        disable_tqdm=True,
    )
    assert job.training.log_completions  # the recipe turns TRL's own completion log on
    return run_grpo(job)


def events(run) -> EventAccumulator:  # noqa: F821
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (folder,) = (run.output_dir / "runs").glob("samples")
    acc = EventAccumulator(str(folder), size_guidance={"images": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_each_sampled_step_shows_the_groups_images_in_tensorboard(grpo_run):
    acc = events(grpo_run)
    assert sorted(acc.Tags()["images"]) == ["samples/group0/image", "samples/group1/image"]
    for tag in acc.Tags()["images"]:
        shown = acc.Images(tag)
        assert [e.step for e in shown] == [1, 2]
        image = Image.open(io.BytesIO(shown[0].encoded_image_string))
        assert image.size == (112, 112) and image.mode == "RGB"


def test_each_group_table_holds_truth_completions_parsed_counts_and_rewards(grpo_run):
    from crowdvlm.parsing import parse_count

    acc = events(grpo_run)
    tags = sorted(t for t in acc.Tags()["tensors"] if t.startswith("samples/group"))
    assert tags == ["samples/group0/text_summary", "samples/group1/text_summary"]
    for tag in tags:
        texts = acc.Tensors(tag)
        assert [e.step for e in texts] == [1, 2]
        text = texts[-1].tensor_proto.string_val[0].decode()
        truth = re.search(r"true count \*\*(\d+)\*\*", text)
        assert truth and 2 <= int(truth[1]) <= 6, text
        header, rule, *rows = [line for line in text.splitlines() if line.startswith("|")]
        assert header == "| # | parsed | fgrpr | format | completion |"
        assert len(rows) == 2  # one row per completion of the group
        for row in rows:
            _, number, parsed, fgrpr, fmt, completion, _ = (
                cell.strip() for cell in re.split(r"(?<!\\)\|", row)
            )
            assert parsed == (
                "–" if parse_count(completion.replace("\\|", "|")) is None else str(parse_count(completion))
            )
            assert float(fgrpr) >= 0 and float(fmt) >= 0


def test_no_samples_without_tensorboard_in_report_to(tmp_path):
    from crowdvlm.train.callbacks import RewardRecorder
    from crowdvlm.train.tensorboard_samples import TensorBoardSamplesCallback

    recorder = RewardRecorder()
    recorder.record("fgrpr", ["<answer>3</answer>"], {"solution": [3], "id": ["a"]}, [1.5])
    callback = TensorBoardSamplesCallback(recorder, every=1)

    class Args:
        report_to = ["none"]
        output_dir = str(tmp_path)

    class State:
        global_step, is_world_process_zero = 1, True

    callback.on_step_end(Args(), State(), None)
    assert callback.writer is None and not (tmp_path / "runs").exists()
