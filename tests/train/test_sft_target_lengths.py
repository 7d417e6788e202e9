"""SFT targets longer than the model takes are found before the model loads: refused, or left out and counted.

A pointing target lists every point: a 3,000-head crowd is about 117,000 tokens, past what any Qwen-VL takes
(the tiny Qwen2.5-VL: 4,096 positions in its config, 32,768 in its tokenizer, as the real 7B's tokenizer).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crowdvlm.train.config import ConfigError, parse_job
from data_writers import write_image

RECIPES = Path(__file__).resolve().parents[2] / "recipes" / "tiny"
QUIET = {"report_to": "none", "disable_tqdm": True}
HEADS = 3000


@pytest.fixture
def crowd_manifest(tmp_path) -> Path:
    """Two small images: one with a few points, one with 3,000 (a dense crowd)."""
    rows = []
    for name, n in (("few", 3), ("crowd", HEADS)):
        write_image(tmp_path / f"{name}.png", size=(224, 168))
        points = [[(i * 7) % 224 + 0.5, (i * 13) % 168 + 0.5] for i in range(n)]
        rows.append(
            {"id": name, "image": f"{name}.png", "problem": "How many dots?", "solution": n, "points": points}
        )
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _job(tiny_model_dir, manifest, out, **overrides):
    return parse_job(
        "sft",
        recipe=RECIPES / "sft_points.yaml",
        model_name_or_path=str(tiny_model_dir),
        dataset=[str(manifest)],
        output_dir=str(out),
        **QUIET,
        **overrides,
    )


class ModelLoaded(Exception):
    pass


def _no_model(*args, **kwargs):
    raise ModelLoaded("the model was loaded")


def test_a_point_target_past_the_model_limit_is_refused_before_the_model_loads(
    tiny_model_dir, crowd_manifest, tmp_path, monkeypatch
):
    import crowdvlm.train.sft as sft

    monkeypatch.setattr(sft, "load_model", _no_model)
    with pytest.raises(ConfigError) as caught:
        sft.run_sft(_job(tiny_model_dir, crowd_manifest, tmp_path / "out"))
    message = str(caught.value)
    assert "id crowd" in message and f"{HEADS} points" in message  # the longest target ...
    assert "the limit is 4096 (max_position_embeddings" in message  # ... against the model's limit
    assert "1 of 2" in message and "skip_long_targets" in message


def test_skip_long_targets_leaves_them_out_counted(
    tiny_model_dir, crowd_manifest, tmp_path, monkeypatch, caplog
):
    import crowdvlm.train.sft as sft

    seen = {}

    def trainer(**kwargs):
        seen["ids"] = list(kwargs["train_dataset"]["id"])
        raise ModelLoaded("stop before training")

    monkeypatch.setattr(sft, "load_model", lambda job: (None, None, None))
    monkeypatch.setattr("trl.SFTTrainer", trainer)
    with caplog.at_level("WARNING"), pytest.raises(ModelLoaded, match="stop before training"):
        sft.run_sft(_job(tiny_model_dir, crowd_manifest, tmp_path / "out", skip_long_targets=True))
    assert seen["ids"] == ["few"]
    assert "leaving out 1 of 2 rows" in caplog.text and "the limit is 4096" in caplog.text


def test_token_limit_reads_the_model_config_and_the_tokenizer(tiny_model_dir):
    from transformers import AutoProcessor

    from crowdvlm.train.target_lengths import model_token_limit

    tokenizer = AutoProcessor.from_pretrained(tiny_model_dir).tokenizer
    limit, source = model_token_limit(str(tiny_model_dir), tokenizer, max_length=None)
    assert (limit, source) == (4096, "max_position_embeddings of the model's config")  # tokenizer: 32768
    assert model_token_limit(str(tiny_model_dir), tokenizer, max_length=500) == (500, "max_length")
