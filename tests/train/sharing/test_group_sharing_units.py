"""Pieces of the group-sharing trainer that need no training loop: row grouping, processor dedup, image dedup."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.qwen3_vl.modeling_qwen3_vl import BaseModelOutputWithDeepstackFeatures

from crowdvlm.train.sharing.processing import (
    CannotExpandError,
    DedupProcessor,
    RowGroups,
    content_key,
    expand_processor_outputs,
    group_rows,
)
from crowdvlm.train.sharing.vision import (
    UniqueImageFeatures,
    encoder_outputs_for,
    per_image_features,
    sharing_unsupported_reason,
    unique_images,
)


def _image(seed: int, size=(112, 112)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


@pytest.mark.parametrize(
    ("keys", "first", "inverse"),
    [
        (["a", "a", "b", "b"], [0, 2], [0, 0, 1, 1]),
        (["a", "b", "a", "b"], [0, 1], [0, 1, 0, 1]),
        (["a", "b", "c"], [0, 1, 2], [0, 1, 2]),
        ([], [], []),
    ],
)
def test_group_rows(keys, first, inverse):
    groups = group_rows(keys)
    assert (groups.first, groups.inverse) == (first, inverse)
    assert groups.has_duplicates == (len(first) < len(keys))


def test_fingerprint_compares_images_by_pixels_not_identity():
    a, a_copy, b = _image(0), _image(0), _image(1)
    conv = _conversations  # one image + one text per row
    assert a is not a_copy
    assert content_key(conv([a], ["n?"])) == content_key(conv([a_copy], ["n?"]))
    assert content_key(conv([a], ["n?"])) != content_key(conv([b], ["n?"]))
    assert content_key(torch.ones(3)) == content_key(torch.ones(3)) != content_key(torch.zeros(3))
    unhashable = object.__new__(type("Opaque", (), {"__hash__": None}))
    assert content_key(unhashable) != content_key(object.__new__(type(unhashable)))  # never merged


def test_expand_processor_outputs_lays_out_rows_images_and_patches():
    groups = RowGroups(first=[0, 2], inverse=[0, 0, 1])
    outputs = {
        "input_ids": [[1, 2], [3, 4]],
        "image_grid_thw": torch.tensor([[1, 2, 2], [1, 2, 1]]),
        "pixel_values": torch.arange(6).reshape(6, 1),  # image 0: rows 0-3, image 1: rows 4-5
    }
    out = expand_processor_outputs(outputs, groups, images_per_group=[1, 1])
    assert out["input_ids"] == [[1, 2], [1, 2], [3, 4]]
    assert out["image_grid_thw"].tolist() == [[1, 2, 2], [1, 2, 2], [1, 2, 1]]
    assert out["pixel_values"].flatten().tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 4, 5]
    out["input_ids"][0][0] = 99
    assert out["input_ids"][1][0] == 1  # rows are copies, not aliases

    with pytest.raises(CannotExpandError, match="image_sizes"):
        expand_processor_outputs({"image_sizes": torch.zeros(5, 2)}, groups, images_per_group=[1, 1])


@pytest.fixture(scope="module")
def processor(tiny_model_dir):
    from transformers import AutoProcessor

    proc = AutoProcessor.from_pretrained(tiny_model_dir)
    proc.tokenizer.padding_side = "left"
    return proc


def _conversations(images, texts):
    return [
        [{"role": "user", "content": [{"type": "image", "image": img}, {"type": "text", "text": text}]}]
        for img, text in zip(images, texts, strict=True)
    ]


def _assert_same_outputs(got, want):
    assert set(got) == set(want)
    for key in want:
        if isinstance(want[key], torch.Tensor):
            assert torch.equal(got[key], want[key]), key
        else:
            assert got[key] == want[key], key


def test_dedup_processor_matches_processor_and_processes_each_row_once(processor):
    # 2 distinct prompts x 3 copies, interleaved; the copies are separate PIL objects, as the dataloader gives.
    images = [_image(i % 2, size=(112, 84 + 28 * (i % 2))) for i in range(6)]
    texts = ["How many dots?", "Count the people in the image."] * 3
    convs = _conversations(images, texts)
    dedup = DedupProcessor(processor)

    kwargs = dict(add_generation_prompt=True, tokenize=True, return_dict=True)
    _assert_same_outputs(
        dedup.apply_chat_template(convs, **kwargs), processor.apply_chat_template(convs, **kwargs)
    )
    rendered = [processor.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in convs]
    call = dict(text=rendered, images=[[img] for img in images], padding=True, return_tensors="pt")
    _assert_same_outputs(dedup(**call), processor(**call))

    assert (dedup.stats.rows_requested, dedup.stats.rows_processed, dedup.stats.images_processed) == (
        12,
        4,
        4,
    )
    assert dedup.stats.fallbacks == []
    assert dedup.tokenizer is processor.tokenizer  # everything else is delegated


def test_unique_images_finds_copies_and_keeps_near_copies_apart():
    grid = torch.tensor([[1, 4, 4]] * 4)
    base = torch.randn(16, 6)
    near = base.clone()
    near[5, 3] += 1.0  # one value off, away from the sampled positions
    pixel_values = torch.cat([base, near, base.clone(), torch.randn(16, 6)])
    first, inverse = unique_images(pixel_values, grid)
    assert first == [0, 1, 3]
    assert inverse == [0, 1, 0, 2]


def _accepts(self, input_ids=None, mm_encoder_outputs=None): ...


def _refuses(self, input_ids=None): ...


@dataclasses.dataclass
class _FeaturesWithMasks(BaseModelOutputWithPooling):
    """An image-features output with a field the language model would need repeated (unknown to sharing)."""

    patch_masks: list | None = None


def _plain_features(self, **kw) -> tuple | BaseModelOutputWithPooling: ...


def _deepstack_features(self, **kw) -> tuple | BaseModelOutputWithDeepstackFeatures: ...


def _masked_features(self, **kw) -> tuple | _FeaturesWithMasks: ...


_FEATURES = {True: _plain_features, "deepstack": _deepstack_features, "masks": _masked_features}


def _model(image_token_id=7, accepts=True, features=True):
    """Stand-in exposing only what sharing_unsupported_reason looks at."""
    attrs = {"forward": _accepts if accepts else _refuses}
    if features:
        attrs["get_image_features"] = _FEATURES[features]
    model = type("StubVLM", (), attrs)()
    model.config = type("Cfg", (), {"image_token_id": image_token_id})()
    return model


_PV, _GRID = torch.zeros(4, 2), torch.tensor([[1, 2, 2]])


@pytest.mark.parametrize(
    ("model_kwargs", "pixel_values", "grid", "extra", "expected"),
    [
        ({}, _PV, _GRID, {"mm_token_type_ids": torch.zeros(1, 3)}, None),
        ({}, None, None, {}, "no images"),
        ({}, _PV, None, {}, "image_grid_thw"),
        ({}, _PV, _GRID, {"pixel_attention_mask": torch.ones(1)}, "pixel_attention_mask"),
        ({"features": False}, _PV, _GRID, {}, "get_image_features"),
        ({"image_token_id": None}, _PV, _GRID, {}, "image_token_id"),
        ({"accepts": False}, _PV, _GRID, {}, "mm_encoder_outputs"),
        ({"features": "deepstack"}, _PV, _GRID, {}, None),  # Qwen3-VL: deepstack features are repeated too
        ({"features": "masks"}, _PV, _GRID, {}, "patch_masks"),
    ],
)
def test_sharing_unsupported_reason(model_kwargs, pixel_values, grid, extra, expected):
    reason = sharing_unsupported_reason(_model(**model_kwargs), pixel_values, grid, [1], extra)
    if expected is None:
        assert reason is None
    else:
        assert expected in str(reason)


def test_per_image_features_rejects_outputs_it_cannot_repeat():
    feats = (torch.zeros(2, 3), torch.ones(1, 3))
    assert per_image_features(BaseModelOutputWithPooling(pooler_output=feats)) == feats
    deepstack = BaseModelOutputWithDeepstackFeatures(pooler_output=feats, deepstack_features=[feats])
    assert per_image_features(deepstack) == feats

    with pytest.raises(ValueError, match="patch_masks"):
        per_image_features(_FeaturesWithMasks(pooler_output=feats, patch_masks=[torch.zeros(3)]))
    with pytest.raises(ValueError, match="one tensor per image"):
        per_image_features(BaseModelOutputWithPooling(pooler_output=torch.zeros(3, 3)))


def test_encoder_outputs_repeat_deepstack_features_with_the_pooled_ones():
    """Qwen3-VL: image j of the rows gets distinct image inverse[j]'s features in every deepstack layer."""
    a, b = torch.zeros(2, 3), torch.ones(1, 3)
    layer_a, layer_b = torch.full((2, 3), 2.0), torch.full((1, 3), 3.0)
    features = UniqueImageFeatures(
        (a, b), {"deepstack_features": [(layer_a, layer_b)]}, BaseModelOutputWithDeepstackFeatures
    )
    out = encoder_outputs_for(features, [1, 0, 0])["image"]
    assert isinstance(out, BaseModelOutputWithDeepstackFeatures)
    assert all(t is s for t, s in zip(out.pooler_output, (b, a, a), strict=True))
    assert all(t is s for t, s in zip(out.deepstack_features[0], (layer_b, layer_a, layer_a), strict=True))
    plain = encoder_outputs_for(UniqueImageFeatures((a, b)), [0, 1])["image"]
    assert type(plain) is BaseModelOutputWithPooling and plain.pooler_output == (a, b)
