"""Packed prompts: each distinct prompt once per log-prob pass, equal to stock trl.GRPOTrainer.

The batch has two prompts of different lengths (45 and 41 tokens with the tiny tokenizer), G = 4 completions
each, rows shuffled as TRL shuffles them, so packed rows of different lengths share one padded tensor.
"""

from __future__ import annotations

import logging

import pytest
import torch
import trl

from crowdvlm.train.sharing import packing
from crowdvlm.train.sharing import trainer as sharing_trainer
from crowdvlm.train.sharing.fallbacks import FallbackReason, SharingSkipped
from crowdvlm.train.sharing.packed_attention import packed_layout
from crowdvlm.train.sharing.trainer import GroupSharedGRPOTrainer
from grpo_helpers import (
    LanguageModelTokens,
    assert_logps_match_stock,
    assert_loss_and_grads_match_stock,
    logp_inputs,
    scored_batch,
    stock_logps,
)
from sharing_helpers import PROMPTS, G
from sharing_helpers import generation_batch as _generation_batch
from sharing_helpers import group_trainer as _trainer


@pytest.fixture(scope="module", params=["sdpa", "eager"])
def trainer_and_batch(request, tiny_model_dir, tmp_path_factory):
    trainer = _trainer(
        GroupSharedGRPOTrainer,
        tiny_model_dir,
        tmp_path_factory.mktemp(request.param),
        gradient_checkpointing=True,
    )
    for model in (trainer.model, trainer.ref_model):
        model.set_attn_implementation(request.param)
        assert model.config.get_text_config()._attn_implementation == request.param
    batch = scored_batch(trainer, _generation_batch(trainer))
    prompt_lengths = sorted(set(batch["prompt_mask"].sum(1).tolist()))
    assert len(prompt_lengths) == PROMPTS  # groups of different prompt lengths in one batch
    return trainer, batch


def test_logps_and_entropies_match_stock(trainer_and_batch):
    """An old-policy pass (no grad) in chunks of 3 rows, so groups span chunks; gradient checkpointing on."""
    assert_logps_match_stock(*trainer_and_batch)


@pytest.mark.parametrize("loss_type", ["dapo", "grpo", "dr_grpo", "bnpo", "cispo"])
def test_loss_and_every_gradient_match_stock(trainer_and_batch, loss_type):
    """The training pass with grad under TRL's loss types, importance ratios away from 1 so that clipping
    applies (as in a ``num_iterations > 1`` step)."""
    trainer, batch = trainer_and_batch
    default, trainer.loss_type = trainer.loss_type, loss_type
    try:
        assert_loss_and_grads_match_stock(trainer, batch)
    finally:
        trainer.loss_type = default


def test_language_model_runs_each_prompt_once_per_pass(trainer_and_batch):
    trainer, batch = trainer_and_batch
    kwargs = logp_inputs(batch)
    completion = batch["completion_ids"].size(1)
    prompt_lengths = batch["prompt_mask"].sum(1)
    rows, prompt_width = batch["prompt_ids"].shape
    counter = LanguageModelTokens(trainer.model)
    try:
        with torch.no_grad():  # reference / old-policy pass
            trainer._get_per_token_logps_and_entropies(trainer.model, **kwargs)
        trainer._get_per_token_logps_and_entropies(trainer.model, **kwargs)  # training pass
        packed = dict(counter.calls)
        counter.calls = {"grad": [], "no_grad": []}
        with torch.no_grad():
            stock_logps(trainer, trainer.model, **kwargs)
        stock = counter.calls["no_grad"]
    finally:
        counter.close()
    # One packed row per prompt: the prompt (its last token moves into each completion segment) + G completions.
    packed_length = int(prompt_lengths.max()) - 1 + G * completion
    assert packed == {"grad": [(PROMPTS, packed_length)], "no_grad": [(PROMPTS, packed_length)]}
    assert stock == [(rows, prompt_width + completion)]
    assert rows == PROMPTS * G


def test_completion_with_an_image_pad_token_stays_text(trainer_and_batch):
    """A sampled ``<|image_pad|>`` is a text token; TRL's per-row forward would count it as an image."""
    trainer, batch = trainer_and_batch
    model = trainer.ref_model
    image_token = model.config.image_token_id
    batch = dict(batch, completion_ids=batch["completion_ids"].clone())
    batch["completion_ids"][1, 2] = image_token
    assert batch["completion_mask"][1, 2] == 1
    kwargs = logp_inputs(batch)
    with torch.no_grad():
        packed = trainer._get_per_token_logps_and_entropies(model, **kwargs)[0]
        with pytest.raises(ValueError, match="Image features and image tokens do not match"):
            stock_logps(trainer, model, **kwargs)
        reference = _per_row_reference(model, kwargs)
    torch.testing.assert_close(packed, reference, rtol=1e-5, atol=1e-5)


def _per_row_reference(model, kwargs):
    """Each row on its own, image features placed at the prompt's placeholders only, positions from
    ``get_rope_index`` with the completion typed as text."""
    input_ids, attention_mask = kwargs["input_ids"], kwargs["attention_mask"]
    completion = kwargs["logits_to_keep"]
    prompt_width = input_ids.size(1) - completion
    image_token = model.config.image_token_id
    features = model.get_image_features(
        pixel_values=kwargs["pixel_values"], image_grid_thw=kwargs["image_grid_thw"], return_dict=True
    ).pooler_output
    out = []
    for r in range(input_ids.size(0)):
        ids, mask = input_ids[r : r + 1], attention_mask[r : r + 1]
        types = torch.zeros_like(ids)
        types[:, :prompt_width] = (ids[:, :prompt_width] == image_token).long()
        embeds = model.get_input_embeddings()(ids)
        embeds = embeds.masked_scatter(types[..., None] == 1, features[r])
        positions, _ = model.model.get_rope_index(
            ids,
            mm_token_type_ids=types,
            image_grid_thw=kwargs["image_grid_thw"][r : r + 1],
            attention_mask=mask,
        )
        labels = ids.masked_fill(mask == 0, -100)
        labels[:, :prompt_width] = -100
        logps = model(
            inputs_embeds=embeds,
            attention_mask=mask,
            position_ids=positions,
            labels=labels,
            fused_lm_head=True,
        ).log_probs
        out.append(logps[:, -completion:])
    return torch.cat(out)


def test_one_step_with_gradient_checkpointing_and_two_iterations_matches_stock(tiny_model_dir, tmp_path):
    """Two full steps each (num_iterations = 2: the second reuses the generation, with an old-policy pass)."""
    from transformers import set_seed

    config = dict(optim="sgd", learning_rate=1.0, gradient_checkpointing=True, num_iterations=2, max_steps=2)
    stock = _trainer(trl.GRPOTrainer, tiny_model_dir, tmp_path, **config)
    ours = _trainer(GroupSharedGRPOTrainer, tiny_model_dir, tmp_path, **config)
    set_seed(0)
    stock.train()
    counter = LanguageModelTokens(ours.model)
    set_seed(0)
    ours.train()
    counter.close()
    assert ours.sharing_fallbacks == {}
    assert any(rows == PROMPTS for rows, _ in counter.calls["grad"])  # the training passes were packed
    stock_logs = [log for log in stock.state.log_history if "loss" in log]
    our_logs = [log for log in ours.state.log_history if "loss" in log]
    assert len(our_logs) == len(stock_logs) == 2
    for stock_log, our_log in zip(stock_logs, our_logs, strict=True):
        for key in ("loss", "kl", "grad_norm", "entropy", "clip_ratio/region_mean"):
            assert our_log[key] == pytest.approx(stock_log[key], rel=1e-4, abs=1e-6), key
    for (name, p_stock), (_, p_ours) in zip(
        stock.model.named_parameters(), ours.model.named_parameters(), strict=True
    ):
        torch.testing.assert_close(p_ours, p_stock, rtol=1e-4, atol=1e-6, msg=name)


def _rows_in_order(batch, order):
    """The scored batch with its rows in ``order`` (pixel values moved with their rows, as TRL's shuffle does)."""
    from trl.trainer.utils import split_pixel_values_by_grid, unsplit_pixel_values_by_grid

    def pick(value):
        if isinstance(value, torch.Tensor) and value.ndim >= 1:
            return value[order]
        return [value[i] for i in order] if isinstance(value, list) else value

    return unsplit_pixel_values_by_grid({k: pick(v) for k, v in split_pixel_values_by_grid(batch).items()})


def test_a_rows_log_probs_do_not_depend_on_the_batch_order(trainer_and_batch):
    """Bit for bit: TRL scores the reference in the generation batch's order and the policy in a shuffled one, so
    a pass whose values move with a row's place in the batch gives the policy other log-probs than the reference
    even at the reference's weights (see the next test for what that does)."""
    trainer, batch = trainer_and_batch
    order = torch.arange(batch["completion_ids"].size(0)).flip(0)
    reordered = _rows_in_order(batch, order)
    with torch.no_grad():
        logps, logps_reordered = (
            trainer._get_per_token_logps_and_entropies(trainer.model, **logp_inputs(b))[0]
            for b in (batch, reordered)
        )
    scored = reordered["completion_mask"].bool()
    assert torch.equal(logps_reordered[scored], logps[order][scored])


@pytest.mark.parametrize("cls", [trl.GRPOTrainer, GroupSharedGRPOTrainer])
def test_a_step_without_reward_signal_leaves_the_model_unchanged(cls, tiny_model_dir, tmp_path):
    """Every group scores alike (reward weight 0), so every advantage is 0, and at the reference weights the KL
    term's gradient, beta * (1 - exp(ref - logp)), is exactly 0 only where the policy's log-probs equal the
    reference's bit for bit. Any difference in the last bit is a gradient of about 1e-9 that Adam, which divides
    by the gradient's own size, turns into a step of up to the learning rate per weight. A 0/1 reward often leaves
    every group of a step without signal (83-88 % of its groups had none in the reward study), so a pass that
    broke this moved that arm where stock TRL does not (docs/rewards.md, the second round)."""
    trainer = _trainer(cls, tiny_model_dir, tmp_path, reward_weights=[0.0], learning_rate=1e-4)
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    trainer.train()
    assert trainer.state.log_history[0]["frac_reward_zero_std"] == 1.0
    moved = [name for name, p in trainer.model.named_parameters() if not torch.equal(p, before[name])]
    assert moved == []


def test_unpackable_layers_fall_back_once_with_a_reason(trainer_and_batch, monkeypatch, caplog):
    trainer, batch = trainer_and_batch
    monkeypatch.setattr(trainer.model.config.get_text_config(), "use_sliding_window", True)
    trainer.sharing_fallbacks.clear()
    trainer.fallback_reasons.clear()
    kwargs = logp_inputs(batch)
    with caplog.at_level(logging.WARNING, logger=sharing_trainer.__name__), torch.no_grad():
        first = trainer._get_per_token_logps_and_entropies(trainer.model, **kwargs)[0]
        second = trainer._get_per_token_logps_and_entropies(trainer.model, **kwargs)[0]
        stock = stock_logps(trainer, trainer.model, **kwargs)[0]
    torch.testing.assert_close(first, stock, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(second, stock, rtol=1e-5, atol=1e-5)
    assert trainer.fallback_reasons == {("prefix", FallbackReason.ATTENTION_LAYERS): 2}
    assert len([r for r in caplog.records if "sliding_window" in r.getMessage()]) == 1
    trainer.sharing_fallbacks.clear()
    trainer.fallback_reasons.clear()


def test_every_attention_implementation_packs(trainer_and_batch, monkeypatch):
    """flash_attention_2, sdpa, eager: the packed passes run the packed attention function whatever is set."""
    trainer, _ = trainer_and_batch
    text_config = trainer.model.config.get_text_config()
    for attention in ("flash_attention_2", "sdpa", "eager"):
        monkeypatch.setattr(text_config, "_attn_implementation", attention)
        assert packing.prefix_unsupported_reason(trainer.model, {}, compute_aux_loss=False) is None


def test_a_batch_without_repeats_runs_per_row_and_the_next_is_packed(trainer_and_batch):
    trainer, batch = trainer_and_batch
    trainer.sharing_fallbacks.clear()
    kwargs = logp_inputs(batch)
    # One row per prompt: nothing repeats in this batch.
    rows = [
        int((batch["prompt_mask"].sum(1) == n).nonzero()[0]) for n in batch["prompt_mask"].sum(1).unique()
    ]
    single = logp_inputs(_rows(batch, rows))
    counter = LanguageModelTokens(trainer.model)
    try:
        with torch.no_grad():
            ours = trainer._get_per_token_logps_and_entropies(trainer.model, **single)[0]
            stock = stock_logps(trainer, trainer.model, **single)[0]
            trainer._get_per_token_logps_and_entropies(trainer.model, **kwargs)
    finally:
        counter.close()
    torch.testing.assert_close(ours, stock, rtol=1e-5, atol=1e-5)
    width = single["input_ids"].size(1)
    assert counter.calls["no_grad"][0] == (PROMPTS, width)  # per row
    assert counter.calls["no_grad"][2][0] == PROMPTS  # packed again
    assert trainer.sharing_fallbacks == {}


def _rows(batch, rows):
    """The batch restricted to ``rows`` (one image per row)."""
    from trl.trainer.utils import split_pixel_values_by_grid, unsplit_pixel_values_by_grid

    split = split_pixel_values_by_grid(batch)
    out = {}
    for key, value in split.items():
        if isinstance(value, torch.Tensor) and value.dim() > 0 and value.size(0) == len(batch["prompt_ids"]):
            out[key] = value[rows]
        elif isinstance(value, list) and len(value) == len(batch["prompt_ids"]):
            out[key] = [value[r] for r in rows]
        else:
            out[key] = value
    return unsplit_pixel_values_by_grid(out)


def test_a_prompt_ending_in_an_image_token_is_not_packed():
    """Its copy at the head of each completion segment would need an image feature: that batch runs per row."""
    ids = torch.tensor([[7, 8, 9]])
    ones = torch.ones_like(ids)
    with pytest.raises(SharingSkipped, match="ends in an image token"):
        packing.pack_rows(
            ids,
            ones,
            ids,
            ones,
            [0],
            [0],
            torch.arange(3).expand(3, 1, 3),
            torch.tensor([[False, False, True]]),
        )


def test_pack_rows_lays_out_prompt_once_and_each_completion_after_it():
    """Two rows of one left-padded prompt [5, 6, 7]: [5, 6 | 7, a0, a1 | 7, b0, b1], labels [a0..a2], [b0..b2]."""
    prompt = torch.tensor([[0, 5, 6, 7], [0, 5, 6, 7]])
    prompt_mask = torch.tensor([[0, 1, 1, 1], [0, 1, 1, 1]])
    completions = torch.tensor([[10, 11, 12], [20, 21, 22]])
    completion_mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    positions = torch.tensor([[0, 0, 1, 2]]).expand(3, 1, 4)
    packed = packing.pack_rows(
        prompt,
        prompt_mask,
        completions,
        completion_mask,
        [0, 0],
        [0],
        positions,
        torch.zeros(1, 4, dtype=torch.bool),
    )
    assert packed.input_ids.tolist() == [[5, 6, 7, 10, 11, 7, 20, 21]]
    assert packed.shift_labels.tolist() == [[-100, -100, 10, 11, 12, 20, 21, -100]]
    assert packed.position_ids[:, 0].tolist() == [[0, 1, 2, 3, 4, 2, 3, 4]] * 4  # text, t, h, w
    assert packed.segments.tolist() == [[0, 0, 1, 1, 1, 2, 2, 2]]
    assert packed.gather_index.tolist() == [[2, 3, 4], [5, 6, 7]]
    layout = packed_layout(packed.segments)
    # Sequences: the prompt [5, 6]; a's queries [7, a0, a1] over [5, 6, 7, a0, a1]; b's likewise.
    assert layout.query_index.tolist() == [0, 1, 2, 3, 4, 5, 6, 7]
    assert layout.key_index.tolist() == [0, 1, 0, 1, 2, 3, 4, 0, 1, 5, 6, 7]
    assert layout.cu_seqlens_q.tolist() == [0, 2, 5, 8] and layout.cu_seqlens_k.tolist() == [0, 2, 7, 12]
    prompts, completions = layout.sdpa_buckets()
    assert prompts["mask"][0, 0].int().tolist() == [[1, 0], [1, 1]]
    mask = completions["mask"][1, 0]  # b's queries (rows) over its keys [5, 6, 7, b0, b1]
    assert mask.int().tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]
