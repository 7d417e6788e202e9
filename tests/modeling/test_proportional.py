"""The proportional benchmark model: scaled down from the real checkpoint, the same compute shares."""

from __future__ import annotations

import pytest

from crowdvlm.modeling.proportional import (
    BUDGET_GMACS,
    PARTS,
    compute_shares,
    scaled_model,
    text_overrides,
    vision_overrides,
)
from crowdvlm.modeling.real_configs import REAL_SHAPES
from crowdvlm.modeling.tiny_families import FAMILIES, TOKEN_PIXELS

IMAGE_SIZE, NEW_TOKENS = 896, 64


def _shape(family):
    image_tokens = (IMAGE_SIZE // TOKEN_PIXELS[family]) ** 2
    return image_tokens, image_tokens + 40, NEW_TOKENS


@pytest.mark.parametrize("family", FAMILIES)
def test_scaled_model_keeps_the_real_compute_shares_within_the_budget(family):
    scaled = scaled_model(family, *_shape(family), min_vocab=576)
    real, ours = compute_shares(REAL_SHAPES[family], *_shape(family)), compute_shares(scaled, *_shape(family))
    for part in PARTS:
        assert ours[part] == pytest.approx(real[part], abs=0.02), part
    assert ours["gmacs"] <= BUDGET_GMACS < real["gmacs"] / 40
    assert scaled.text.layer_types == REAL_SHAPES[family].text.layer_types[-scaled.text.num_layers :]
    assert scaled.text.layer_types[-1] == "full_attention"


def test_the_lm_head_share_follows_the_vocabulary():
    real = REAL_SHAPES["qwen2_5_vl"]
    doubled = type(real)(
        real.name, type(real.text)(**{**vars(real.text), "vocab_size": 2 * 151936}), real.vision
    )
    assert (
        compute_shares(doubled, *_shape("qwen2_5_vl"))["lm_head"]
        > compute_shares(real, *_shape("qwen2_5_vl"))["lm_head"]
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_scaled_config_builds_with_the_scaled_sizes(family):
    from transformers import AutoModelForImageTextToText

    from crowdvlm.modeling.tiny_families import TinySizes, tiny_config

    scaled = scaled_model(family, *_shape(family), min_vocab=576)
    ids = {t: i for i, t in enumerate(["<|endoftext|>", "<|im_end|>", "<|image_pad|>", "<|video_pad|>"])}
    ids |= {"<|vision_start|>": 4, "<|vision_end|>": 5}
    sizes = TinySizes(
        64, 2, 64, 2, scaled.text.vocab_size, text_overrides(scaled.text), vision_overrides(scaled.vision)
    )
    config = tiny_config(family, sizes, ids)
    text, vision = config.get_text_config(), config.vision_config
    assert (text.hidden_size, text.num_hidden_layers, text.vocab_size) == (
        scaled.text.hidden_size,
        scaled.text.num_layers,
        scaled.text.vocab_size,
    )
    assert list(text.layer_types) == list(scaled.text.layer_types)
    assert text.rope_parameters["mrope_section"] == list(REAL_SHAPES[family].text.mrope_section)
    assert (vision.depth, vision.hidden_size) == (scaled.vision.depth, scaled.vision.hidden_size)
    model = AutoModelForImageTextToText.from_config(config)
    assert model.get_output_embeddings().weight.shape[0] == scaled.text.vocab_size
