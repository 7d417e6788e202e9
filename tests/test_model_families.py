"""Every tiny model family (Qwen2.5-VL, Qwen3-VL, Qwen3.5) builds reproducibly and GroupSharedGRPOTrainer
matches stock trl.GRPOTrainer on it with every sharing path on: processor, vision tower (Qwen3-VL's deepstack
features included) and generation prefill (Qwen3.5's hybrid linear-attention cache included)."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from crowdvlm.modeling.tiny_families import FAMILIES
from crowdvlm.train.sharing import prefill
from crowdvlm.train.sharing import trainer as sharing_trainer
from crowdvlm.train.sharing.fallbacks import FallbackReason
from crowdvlm.train.sharing.families import FAMILIES as SHARING
from crowdvlm.train.sharing.trainer import GroupSharedGRPOTrainer

G = 4  # completions per prompt
PROMPTS = 2  # distinct prompts per batch
PATCHES = 64  # a 112-px image at each family's default max_pixels: an 8x8 patch grid
CLASSES = {
    "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
    "qwen3_vl": "Qwen3VLForConditionalGeneration",
    "qwen3_5": "Qwen3_5ForConditionalGeneration",
}


def _hashes(folder) -> dict[str, str]:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(folder.iterdir())}


@pytest.mark.parametrize("family", FAMILIES)
def test_tiny_family_is_byte_identical_for_a_seed_and_loads_by_auto_classes(family, tmp_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from crowdvlm.modeling.tiny import build_tiny_model

    a, b, other = (
        build_tiny_model(tmp_path / n, family=family, seed=s) for n, s in (("a", 0), ("b", 0), ("c", 1))
    )
    assert _hashes(a) == _hashes(b)
    assert _hashes(a)["model.safetensors"] != _hashes(other)["model.safetensors"]

    model = AutoModelForImageTextToText.from_pretrained(a)
    processor = AutoProcessor.from_pretrained(a)
    assert type(model).__name__ == CLASSES[family]
    assert processor.tokenizer.tokenize("2026") == ["2", "0", "2", "6"]
    text = model.config.get_text_config()
    if family == "qwen3_5":  # hybrid: gated delta-net layers beside full attention
        assert set(text.layer_types) == {"linear_attention", "full_attention"}
    if family == "qwen3_vl":
        assert len(model.config.vision_config.deepstack_visual_indexes) >= 1


def length_reward(completions, **kwargs) -> list[float]:
    """Dense shaping reward so that a random model still gets non-zero advantages."""
    return [float(len(c[0]["content"]) % 7) for c in completions]


def _dataset(with_images: bool = True):
    from datasets import Dataset

    rng = np.random.default_rng(0)
    texts = ["How many dots are in the image?", "Count the people."]
    head = [{"type": "image"}] if with_images else []
    columns = {
        "prompt": [[{"role": "user", "content": [*head, {"type": "text", "text": t}]}] for t in texts],
        "solution": [3] * PROMPTS,
    }
    if with_images:
        columns["image"] = [
            Image.fromarray(rng.integers(0, 255, (112, 112, 3), dtype=np.uint8)) for _ in texts
        ]
    return Dataset.from_dict(columns)


def _trainer(cls, model_dir, tmp_path, *, with_images=True, lora=False, **config):
    from transformers import set_seed
    from trl import GRPOConfig

    from crowdvlm.modeling import load_model_and_processor

    set_seed(0)  # LoRA's A matrices are drawn at wrap time
    lora_config = {"r": 4, "alpha": 8, "dropout": 0.0} if lora else None
    model, processor = load_model_and_processor(model_dir, dtype="float32", lora=lora_config)
    # TRL pads prompt_ids left but takes mm_token_type_ids from the processor's padding side (trl #5785): with
    # prompts of different lengths and a right-padding processor stock TRL misplaces image positions, so the
    # comparison is made where stock TRL is right (the packed prompts read placeholders off the tokens).
    processor.tokenizer.padding_side = "left"
    args = dict(
        output_dir=str(tmp_path / cls.__name__),
        per_device_train_batch_size=PROMPTS * G,
        num_generations=G,
        max_completion_length=8,
        learning_rate=1.0,
        optim="sgd",
        beta=0.04,
        max_steps=1,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        bf16=False,
        seed=0,
        data_seed=0,
    )
    args.update(config)
    return cls(
        model=model,
        reward_funcs=[length_reward],
        args=GRPOConfig(**args),
        train_dataset=_dataset(with_images),
        processing_class=processor,
    )


def _sharing_warnings(caplog, family: str = "qwen2_5_vl") -> list[str]:
    return [
        m
        for r in caplog.records
        if r.name == sharing_trainer.__name__ and not is_packing_fallback(family, m := r.getMessage())
    ]


# A family whose registry entry does not pack (train/sharing/families.py) runs the log-prob passes per row, with
# one logged reason, the only fallback it may show.
PACKING_FALLBACK = ("prefix", FallbackReason.MODEL_FAMILY)


def packs(family: str) -> bool:
    return SHARING[family].packing


def is_packing_fallback(family: str, message: str) -> bool:
    """Whether a logged warning is the packing fallback of a family that does not pack."""
    return not packs(family) and message.startswith("group sharing off for prefix (")


def other_fallbacks(family: str, reasons) -> dict:
    """The fallbacks (``trainer.fallback_reasons``) a family is not expected to have."""
    return {k: v for k, v in reasons.items() if packs(family) or k != PACKING_FALLBACK}


class Recorder:
    """Completion ids each generation round samples, and patch rows the vision tower encodes with grad."""

    def __init__(self, trainer):
        self.completions: list[torch.Tensor] = []
        self.vision_rows = 0
        score = trainer._generate_and_score_completions

        def recording(inputs):
            out = score(inputs)
            self.completions.append(out["completion_ids"].clone())
            return out

        trainer._generate_and_score_completions = recording
        visual = next(m for n, m in trainer.model.named_modules() if n.endswith("visual"))
        visual.register_forward_hook(self._count)

    def _count(self, module, args, output):
        self.vision_rows += args[0].shape[0] if torch.is_grad_enabled() else 0


@pytest.mark.parametrize("family", FAMILIES)
def test_one_step_matches_stock_with_every_sharing_path(
    family, tiny_family_dir, tmp_path, caplog, monkeypatch
):
    """Same seed, one step each: same sampled tokens, loss, KL and gradient (SGD at lr 1: the weight change)."""
    import trl
    from transformers import set_seed

    model_dir = tiny_family_dir(family)
    trainers = {cls: _trainer(cls, model_dir, tmp_path) for cls in (trl.GRPOTrainer, GroupSharedGRPOTrainer)}
    recorders = {cls: Recorder(trainer) for cls, trainer in trainers.items()}
    prefills = []
    real_prefill = prefill.generate_with_shared_prefix

    def counting_prefill(*args, **kwargs):
        prefills.append(args[2].shape[0])  # distinct prompts prefilled
        return real_prefill(*args, **kwargs)

    monkeypatch.setattr(sharing_trainer, "generate_with_shared_prefix", counting_prefill)
    with caplog.at_level(logging.WARNING, logger=sharing_trainer.__name__):
        for trainer in trainers.values():
            set_seed(0)
            trainer.train()
    stock, ours = trainers[trl.GRPOTrainer], trainers[GroupSharedGRPOTrainer]

    assert other_fallbacks(family, ours.fallback_reasons) == {} and not _sharing_warnings(caplog, family)
    assert packs(family) != (PACKING_FALLBACK in ours.fallback_reasons)
    assert prefills == [PROMPTS]
    assert recorders[GroupSharedGRPOTrainer].vision_rows == PROMPTS * PATCHES
    assert recorders[trl.GRPOTrainer].vision_rows == PROMPTS * G * PATCHES
    assert torch.equal(
        recorders[GroupSharedGRPOTrainer].completions[0], recorders[trl.GRPOTrainer].completions[0]
    )
    stock_log, our_log = stock.state.log_history[0], ours.state.log_history[0]
    assert stock_log["grad_norm"] > 0
    for key in ("loss", "reward", "kl", "completions/mean_length", "grad_norm"):
        assert our_log[key] == pytest.approx(stock_log[key], rel=1e-4, abs=1e-6), key
    for (name, p_stock), (_, p_ours) in zip(
        stock.model.named_parameters(), ours.model.named_parameters(), strict=True
    ):
        torch.testing.assert_close(p_ours, p_stock, rtol=1e-4, atol=1e-6, msg=name)


def test_qwen3_5_text_only_prompts_train_with_shared_prefill(tiny_family_dir, tmp_path):
    """The reported crash: LinearAttentionLayer has no batch_select_indices, text-only prompts included."""
    trainer = _trainer(
        GroupSharedGRPOTrainer,
        tiny_family_dir("qwen3_5"),
        tmp_path,
        with_images=False,
        max_steps=2,
        learning_rate=1e-3,
        optim="adamw_torch",
    )
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    assert trainer.state.global_step == 2 and other_fallbacks("qwen3_5", trainer.fallback_reasons) == {}
    assert any(not torch.equal(p, before[n]) for n, p in trainer.model.named_parameters())


def test_a_one_token_prompt_falls_back_for_its_batch_only(tiny_family_dir, tmp_path, caplog, monkeypatch):
    trainer = _trainer(GroupSharedGRPOTrainer, tiny_family_dir("qwen3_5"), tmp_path, with_images=False)
    calls = []
    real_prefill = prefill.generate_with_shared_prefix
    monkeypatch.setattr(
        sharing_trainer,
        "generate_with_shared_prefix",
        lambda *a, **k: calls.append(1) or real_prefill(*a, **k),
    )
    ids = trainer.processing_class.tokenizer("How many dots?")["input_ids"]
    with caplog.at_level(logging.WARNING, logger=sharing_trainer.__name__), torch.no_grad():
        short, _ = trainer._generate_single_turn([[ids[0]]] * G, None, {}, G)
        assert calls == [] and len(short) == G
        normal, _ = trainer._generate_single_turn([ids] * G, None, {}, G)
        again, _ = trainer._generate_single_turn([[ids[0]]] * G + [ids] * G, None, {}, G)
        assert calls == [1] and len(normal) == G and len(again) == 2 * G
    assert other_fallbacks("qwen3_5", trainer.fallback_reasons) == {
        ("generation of one batch", FallbackReason.PROMPT_SHAPE): 2
    }
    assert (
        len(_sharing_warnings(caplog, "qwen3_5")) == 1
    )  # one logged reason, however many batches it applies to


@pytest.mark.parametrize("family", FAMILIES)
def test_cache_rows_can_be_selected_on_every_family(family, tiny_family_dir):
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(tiny_family_dir(family))
    assert prefill.prefill_unsupported_reason(model) is None


def test_unknown_cache_layers_are_refused_before_any_work(tiny_family_dir):
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(tiny_family_dir("qwen3_5"))
    model.config.text_config.layer_types = ["linear_attention", "paged_attention"]
    reason = prefill.prefill_unsupported_reason(model)
    assert reason.reason is FallbackReason.CACHE and "paged_attention" in reason.detail


@pytest.mark.parametrize(
    ("lengths", "last_types", "expected"),
    [([5, 3], [0, 0], None), ([5, 1], [0, 0], "shorter than 2"), ([5, 3], [0, 1], "image/video token")],
)
def test_batch_unsupported_reason(lengths, last_types, expected):
    types = torch.zeros(len(lengths), 5, dtype=torch.long)
    types[:, -1] = torch.tensor(last_types)
    reason = prefill.batch_unsupported_reason(lengths, {"mm_token_type_ids": types})
    assert reason is None if expected is None else expected in reason.detail


def test_qwen3_5_recipe_lora_targets_reach_the_linear_attention_layers(tiny_family_dir):
    import yaml

    from crowdvlm.modeling import load_model_and_processor

    recipe = yaml.safe_load(
        (Path(__file__).resolve().parents[1] / "recipes/qwen3_5_9b/grpo_fgrpr.yaml").read_text()
    )
    model, _ = load_model_and_processor(
        tiny_family_dir("qwen3_5"), lora={"r": 4, "alpha": 8, "target_modules": recipe["lora_target_modules"]}
    )
    adapted = {n.split(".lora_A")[0].rsplit(".", 2)[-2] for n, _ in model.named_parameters() if "lora_A" in n}
    assert {"linear_attn", "self_attn", "mlp"} <= adapted
    assert not any("visual" in n for n, _ in model.named_parameters() if "lora_" in n)


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_processor_can_be_shared(family, tiny_family_dir):
    from transformers import AutoProcessor

    from crowdvlm.train.sharing.processing import processor_unsupported_reason

    assert processor_unsupported_reason(AutoProcessor.from_pretrained(tiny_family_dir(family))) is None
    stub = type(
        "PatchMaskProcessor", (), {"model_input_names": ["input_ids", "pixel_values", "pixel_mask"]}
    )()
    reason = processor_unsupported_reason(stub)
    assert reason.reason is FallbackReason.PROCESSOR_INPUTS and "pixel_mask" in reason.detail
