"""The packed attention function: its sdpa stand-in against per-row sdpa (outputs and gradients), and the proof
that transformers' stock flash_attention_2 never receives a packed row."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from crowdvlm.train.sharing.packed_attention import (
    PackedLayoutError,
    check_packed_attention,
    install_packed_attention,
    packed_attention_forward,
    packed_layout,
)

HEADS, KV_HEADS, DIM = 4, 2, 8


def _segments(prompts: list[int], completions: int, width: int) -> torch.Tensor:
    """Packed rows: each prompt, then ``completions`` segments of width ``width``, right-padded with -1."""
    rows = [[0] * p + [i for i in range(1, completions + 1) for _ in range(width)] for p in prompts]
    length = max(map(len, rows))
    return torch.tensor([row + [-1] * (length - len(row)) for row in rows])


class _Attention(torch.nn.Module):
    num_key_value_groups = HEADS // KV_HEADS


def _per_row_reference(query, key, value, segments):
    """Each completion as a row of its own, ``[prompt ; completion]``, under plain causal sdpa (and the prompt
    as its own row); returns the outputs at the packed positions."""
    out = torch.zeros(query.size(0), query.size(2), HEADS, DIM, dtype=query.dtype)
    for r, row in enumerate(segments.tolist()):
        prompt = [p for p, s in enumerate(row) if s == 0]
        for s in sorted({s for s in row if s > 0}) or [0]:
            own = [p for p, t in enumerate(row) if t == s] if s > 0 else []
            index = torch.tensor(prompt + own)
            q, k, v = query[r][:, index], key[r][:, index], value[r][:, index]
            k, v = (x.repeat_interleave(HEADS // KV_HEADS, dim=0) for x in (k, v))
            o = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)  # (H, len, D)
            out[r, index] = o.transpose(0, 1)
    return out


@pytest.mark.parametrize(("prompts", "completions", "width"), [([5, 3], 3, 4), ([1, 6], 2, 3), ([4], 1, 1)])
def test_sdpa_stand_in_matches_per_row_sdpa_outputs_and_gradients(prompts, completions, width):
    segments = _segments(prompts, completions, width)
    n, length = segments.shape
    generator = torch.Generator().manual_seed(0)
    shapes = {
        "query": (n, HEADS, length, DIM),
        "key": (n, KV_HEADS, length, DIM),
        "value": (n, KV_HEADS, length, DIM),
    }
    leaves = {k: torch.randn(s, generator=generator, dtype=torch.float64) for k, s in shapes.items()}
    packed_in = {k: v.clone().requires_grad_() for k, v in leaves.items()}
    rows_in = {k: v.clone().requires_grad_() for k, v in leaves.items()}
    weight = torch.randn(n, length, HEADS, DIM, generator=generator, dtype=torch.float64)
    valid = (segments >= 0)[..., None, None]

    packed, _ = packed_attention_forward(
        _Attention(), **packed_in, attention_mask=None, packed_layout=packed_layout(segments)
    )
    reference = _per_row_reference(rows_in["query"], rows_in["key"], rows_in["value"], segments)
    torch.testing.assert_close(packed * valid, reference.to(packed.dtype) * valid)
    assert torch.equal(packed[~valid.expand_as(packed)], torch.zeros_like(packed[~valid.expand_as(packed)]))
    (packed * weight * valid).sum().backward()
    (reference * weight * valid).sum().backward()
    for name in shapes:  # the prompt's keys/values get the sum of every completion's gradient
        torch.testing.assert_close(packed_in[name].grad, rows_in[name].grad, msg=name)


def test_the_function_refuses_a_call_without_its_layout():
    q = torch.zeros(1, HEADS, 3, DIM)
    with pytest.raises(PackedLayoutError, match="without a packed_layout"):
        packed_attention_forward(_Attention(), q, q[:, :KV_HEADS], q[:, :KV_HEADS], None)
    with pytest.raises(PackedLayoutError, match="rows"):
        packed_attention_forward(
            _Attention(),
            q,
            q[:, :KV_HEADS],
            q[:, :KV_HEADS],
            None,
            packed_layout=packed_layout(_segments([2], 1, 2)),
        )


def test_a_model_without_the_dispatch_refuses_packed_rows(tiny_model_dir):
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    with pytest.raises(PackedLayoutError, match="do not dispatch packed rows"):
        check_packed_attention(model)
    assert install_packed_attention(model) == model.config.get_text_config().num_hidden_layers
    assert install_packed_attention(model) == model.config.get_text_config().num_hidden_layers  # idempotent
    check_packed_attention(model)
    vision = model.config.vision_config._attn_implementation
    assert model.config.get_text_config()._attn_implementation == vision == "sdpa"  # configs untouched


def test_stock_flash_attention_never_receives_a_packed_row(tiny_model_dir, tmp_path, monkeypatch):
    """Text config set to flash_attention_2 (its function replaced by one that fails): the packed passes, with grad
    and gradient checkpointing (whose recomputation runs in backward), equal per-row sdpa and never call it."""
    from transformers import AttentionInterface

    from crowdvlm.train.sharing.trainer import GroupSharedGRPOTrainer
    from grpo_helpers import logp_inputs, scored_batch, stock_logps
    from test_group_sharing import _generation_batch, _trainer

    trainer = _trainer(GroupSharedGRPOTrainer, tiny_model_dir, tmp_path, gradient_checkpointing=True)
    batch = scored_batch(trainer, _generation_batch(trainer))
    kwargs = logp_inputs(batch)
    text_config = trainer.model.config.get_text_config()
    expected = stock_logps(trainer, trainer.model, **kwargs)[0]
    expected.sum().backward()
    stock_grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    trainer.model.zero_grad()

    calls = []

    def stock_flash_attention(module, *args, **kw):
        calls.append(kw.get("packed_layout"))
        raise AssertionError("stock flash_attention_2 was called")

    monkeypatch.setitem(AttentionInterface._global_mapping, "flash_attention_2", stock_flash_attention)
    monkeypatch.setattr(text_config, "_attn_implementation", "flash_attention_2")
    ours = trainer._get_per_token_logps_and_entropies(trainer.model, **kwargs)[0]
    ours.sum().backward()
    assert calls == [] and trainer.fallback_reasons == {}
    assert text_config._attn_implementation == "flash_attention_2"
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
    for name, grad in stock_grads.items():
        torch.testing.assert_close(
            dict(trainer.model.named_parameters())[name].grad, grad, rtol=1e-4, atol=1e-6
        )
    with pytest.raises(
        AssertionError, match="stock flash_attention_2 was called"
    ):  # the per-row path does call it
        stock_logps(trainer, trainer.model, **kwargs)


@pytest.mark.gpu
@pytest.mark.skipif(
    not torch.cuda.is_available() or importlib.util.find_spec("flash_attn") is None,
    reason="needs a CUDA device and flash-attn",
)
def test_flash_varlen_matches_the_sdpa_stand_in_on_gpu():
    """The one part CPU tests cannot reach: flash_attn_varlen_func (bottom-right causal) on the same layout."""
    from crowdvlm.train.sharing import packed_attention

    segments = _segments([300, 120], 8, 64).cuda()
    n, length = segments.shape
    generator = torch.Generator(device="cuda").manual_seed(0)
    shapes = {
        "query": (n, HEADS, length, 128),
        "key": (n, KV_HEADS, length, 128),
        "value": (n, KV_HEADS, length, 128),
    }
    leaves = {
        k: torch.randn(s, generator=generator, device="cuda", dtype=torch.bfloat16) for k, s in shapes.items()
    }
    layout = packed_layout(segments)
    weight = torch.randn(n, length, HEADS, 128, generator=generator, device="cuda")
    results = {}
    for path in ("flash", "sdpa"):
        inputs = {k: v.clone().requires_grad_() for k, v in leaves.items()}
        with pytest.MonkeyPatch.context() as patch:
            if path == "sdpa":
                patch.setattr(packed_attention, "flash_varlen_available", lambda q: False)
            else:
                assert packed_attention.flash_varlen_available(inputs["query"])
            out, _ = packed_attention_forward(
                _Attention(), **inputs, attention_mask=None, packed_layout=layout
            )
        (out.float() * weight).sum().backward()
        results[path] = (out, {k: v.grad for k, v in inputs.items()})
    torch.testing.assert_close(results["flash"][0], results["sdpa"][0], rtol=2e-2, atol=2e-2)
    for name in shapes:
        torch.testing.assert_close(results["flash"][1][name], results["sdpa"][1][name], rtol=5e-2, atol=5e-2)


def test_linear_attention_layers_refuse_packed_rows_without_a_packer(tiny_family_dir, monkeypatch):
    """Qwen3.5's Gated DeltaNet state would carry c1 into c2: a packed pass needs the family's packer (the slot
    in train/sharing/families.py), which then receives every packed call and no other."""
    import dataclasses

    from transformers import AutoModelForImageTextToText

    from crowdvlm.train.sharing import families
    from crowdvlm.train.sharing.packed_attention import install_linear_attention_packer

    monkeypatch.setitem(
        families.FAMILIES,
        "qwen3_5",
        dataclasses.replace(families.FAMILIES["qwen3_5"], linear_attention_packer=None),
    )
    model = AutoModelForImageTextToText.from_pretrained(tiny_family_dir("qwen3_5"))
    install_packed_attention(model)
    with pytest.raises(PackedLayoutError, match="linear-attention modules have no packer"):
        check_packed_attention(model)

    calls = []

    def packer(module, *args, **kwargs):
        calls.append(kwargs["packed_layout"])
        return kwargs["hidden_states"]

    layers = install_linear_attention_packer(model, packer)
    assert layers == model.config.get_text_config().layer_types.count("linear_attention") > 0
    check_packed_attention(model)
    module = next(m for n, m in model.named_modules() if n.endswith("linear_attn"))
    hidden = torch.randn(1, 5, model.config.get_text_config().hidden_size)
    layout = packed_layout(_segments([3], 1, 2))
    assert module(hidden_states=hidden, packed_layout=layout) is hidden and calls == [layout]
    assert module(hidden_states=hidden).shape == hidden.shape and len(calls) == 1  # its own forward
