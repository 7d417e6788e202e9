"""The tiny Qwen2.5-VL builder and the model loader (LoRA, frozen vision, pixel bounds)."""

from __future__ import annotations

import hashlib

import pytest

from crowdvlm.modeling import (
    build_lora_config,
    check_model_path,
    count_parameters,
    is_vision_parameter,
    load_model_and_processor,
)
from crowdvlm.modeling.tiny import QWEN_SPECIAL_TOKENS, build_tiny_model


def _digest(folder) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_tiny_model_loads_through_auto_classes(tiny_model_dir):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert type(processor).__name__ == "Qwen2_5_VLProcessor"
    assert type(processor.video_processor).__name__ == "Qwen2VLVideoProcessor"
    assert model.config.image_token_id == processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert count_parameters(model)["total"] < 1_000_000


def test_tiny_tokenizer_has_qwen_specials_in_order(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    ids = [tok.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS]
    assert ids == list(range(ids[0], ids[0] + len(QWEN_SPECIAL_TOKENS)))  # appended after the BPE vocabulary
    assert ids[-1] == len(tok) - 1
    assert (tok.eos_token, tok.pad_token) == ("<|im_end|>", "<|endoftext|>")


@pytest.mark.parametrize("text", ["0", "7", "42", "1234567890", " 305 people"])
def test_tiny_tokenizer_splits_digits(tiny_model_dir, text):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    pieces = [tok.decode([i]) for i in tok(text)["input_ids"]]
    digits = [p for p in pieces if any(c.isdigit() for c in p)]
    assert digits == [c for c in text if c.isdigit()]
    assert "".join(pieces) == text


def test_tiny_tokenizer_keeps_tags_short(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert len(tok("<answer>12</answer>")["input_ids"]) <= 8


def test_chat_template_and_image_tokens(tiny_model_dir):
    from PIL import Image
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many dots?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "<|vision_start|><|image_pad|><|vision_end|>How many dots?<|im_end|>\n<|im_start|>assistant\n"
    )
    batch = processor(text=[text], images=[Image.new("RGB", (224, 224), "white")], return_tensors="pt")
    # max_pixels 112*112 -> an 8x8 patch grid -> 16 merged image tokens.
    assert batch["image_grid_thw"].tolist() == [[1, 8, 8]]
    image_id = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert int((batch["input_ids"] == image_id).sum()) == 16


def test_tiny_model_is_deterministic_by_seed(tmp_path):
    a = build_tiny_model(tmp_path / "a", seed=3)
    b = build_tiny_model(tmp_path / "b", seed=3)
    c = build_tiny_model(tmp_path / "c", seed=4)
    assert _digest(a) == _digest(b)
    assert _digest(a)["model.safetensors"] != _digest(c)["model.safetensors"]
    assert _digest(a)["tokenizer.json"] == _digest(c)["tokenizer.json"]


def test_tiny_model_generates(tiny_model_dir):
    import torch
    from PIL import Image

    model, processor = load_model_and_processor(tiny_model_dir)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Count the dots."}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    batch = processor(text=[text], images=[Image.new("RGB", (112, 112), "white")], return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=5, do_sample=False)
    assert out.shape[1] > batch["input_ids"].shape[1]


@pytest.mark.parametrize(
    ("name", "vision"),
    [
        ("model.visual.blocks.0.attn.qkv.weight", True),
        ("model.visual.merger.mlp.0.weight", True),
        ("model.vision_tower.encoder.layers.0.q_proj", True),
        ("model.language_model.layers.0.self_attn.q_proj.weight", False),
        ("lm_head.weight", False),
        ("model.visualize_head", False),
    ],
)
def test_is_vision_parameter(name, vision):
    assert is_vision_parameter(name) is vision


def test_load_with_pixels_and_frozen_vision(tiny_model_dir):
    model, processor = load_model_and_processor(
        tiny_model_dir, dtype="float32", min_pixels=28 * 28, max_pixels=224 * 224, freeze_vision=True
    )
    assert processor.image_processor.size == {"shortest_edge": 784, "longest_edge": 50176}
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all(is_vision_parameter(n) for n in frozen)
    assert frozen == {n for n, _ in model.named_parameters() if is_vision_parameter(n)}


def test_lora_excludes_vision_by_default(tiny_model_dir):
    model, _ = load_model_and_processor(tiny_model_dir, lora={"r": 4, "alpha": 8})
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert not any(is_vision_parameter(n) for n in trainable)
    assert any("q_proj" in n for n in trainable) and any("down_proj" in n for n in trainable)


def test_lora_can_include_vision(tiny_model_dir):
    config = build_lora_config(r=4, alpha=8, target_modules=["qkv", "q_proj"], include_vision=True)
    model, _ = load_model_and_processor(tiny_model_dir, lora=config)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any(is_vision_parameter(n) for n in trainable)


@pytest.mark.parametrize("bad", ["does/not-exist", "./no/such/folder", "nofolder"])
def test_missing_model_fails_with_a_clear_message(bad, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="model_name_or_path"):
        check_model_path(bad)


def test_model_cli_builds_tiny(tmp_path, capsys):
    from crowdvlm.cli import main

    assert main(["model", "tiny", "--out", str(tmp_path / "m"), "--seed", "1"]) == 0
    assert (tmp_path / "m" / "model.safetensors").exists()
    assert main(["model", "info", str(tmp_path / "m")]) == 0
    assert '"architecture": "Qwen2_5_VLForConditionalGeneration"' in capsys.readouterr().out
