"""The published architectures written into crowdvlm rebuild models of the published sizes (meta device)."""

import pytest

from crowdvlm.modeling.real_configs import REAL_MODELS, known_model, real_config, real_config_dict

# Parameter counts the model cards / safetensors indexes publish (Qwen3.5-9B: without its MTP head,
# which transformers does not build).
PUBLISHED_PARAMETERS = {
    "Qwen/Qwen2.5-VL-3B-Instruct": 3_754_622_976,
    "Qwen/Qwen2.5-VL-7B-Instruct": 8_292_166_656,
    "Qwen/Qwen3-VL-4B-Instruct": 4_437_815_808,
    "Qwen/Qwen3-VL-8B-Instruct": 8_767_123_696,
    "Qwen/Qwen3.5-9B": 9_409_813_744,
}


def meta_parameters(config) -> int:
    from accelerate import init_empty_weights
    from transformers import AutoModelForImageTextToText

    with init_empty_weights():
        model = AutoModelForImageTextToText.from_config(config)
    model.tie_weights()  # not applied under init_empty_weights by itself
    return sum(p.numel() for p in model.parameters())


# Every model except Qwen3.5-0.8B, the proportional shape's source, three of whose values are assumed (its entry).
@pytest.mark.parametrize("model_id", sorted(PUBLISHED_PARAMETERS))
def test_real_config_builds_the_published_parameter_count(model_id):
    assert meta_parameters(real_config(model_id)) == PUBLISHED_PARAMETERS[model_id]


def test_every_model_but_the_assumed_one_is_checked_against_its_published_count():
    assert set(REAL_MODELS) - set(PUBLISHED_PARAMETERS) == {"Qwen/Qwen3.5-0.8B"}


def test_fewer_layers_keep_the_family_pattern():
    config = real_config_dict("qwen3_5_9b", num_layers=5, vision_depth=4)
    assert config["text_config"]["layer_types"][-1] == "full_attention"
    assert len(config["text_config"]["layer_types"]) == 5
    assert config["vision_config"]["depth"] == 4
    qwen25 = real_config_dict("qwen2_5_vl_3b", vision_depth=10)
    assert qwen25["vision_config"]["fullatt_block_indexes"] == [7]
    # the module's own data is untouched
    assert REAL_MODELS["Qwen/Qwen3.5-9B"]["config"]["text_config"]["num_hidden_layers"] == 32


def test_token_ids_are_the_callers_and_vocabulary_stays_real():
    ids = {
        t: i
        for i, t in enumerate(
            [
                "<|endoftext|>",
                "<|im_end|>",
                "<|image_pad|>",
                "<|video_pad|>",
                "<|vision_start|>",
                "<|vision_end|>",
            ]
        )
    }
    config = real_config("qwen2_5_vl_3b", ids)
    assert config.image_token_id == 2 and config.text_config.eos_token_id == 1
    assert config.text_config.vocab_size == 151936


def test_unknown_model_names_the_known_ones():
    assert known_model("nobody/model") is None
    with pytest.raises(ValueError, match="qwen2_5_vl_3b"):
        real_config("nobody/model")
