"""The ZeRO-3 call-count helpers of shared_vision, on one process (the 2-process case: test_zero3_group_sharing)."""

from __future__ import annotations

import pytest
import torch

from crowdvlm.train.sharing.vision import dummy_image, pad_vision_calls, per_image_features, vision_calls


@pytest.mark.parametrize(
    ("sharing", "has_images", "rows", "batch_size", "expected"),
    [
        (True, True, 16, 4, 1),  # all distinct images of the pass in one call
        (False, True, 16, 4, 4),  # TRL: one call per forward chunk
        (False, True, 16, None, 1),
        (True, False, 16, 4, 0),  # no images, no call
        (False, False, 16, 4, 0),
    ],
)
def test_vision_calls(sharing, has_images, rows, batch_size, expected):
    pixel_values = torch.zeros(4, 8) if has_images else None
    assert vision_calls(sharing, pixel_values, rows, batch_size) == expected


def test_dummy_image_is_one_merge_window_the_tower_accepts(tiny_model_dir):
    from crowdvlm.modeling import load_model_and_processor

    model, _ = load_model_and_processor(tiny_model_dir, dtype="float32")
    pixel_values, grid = dummy_image(model, torch.device("cpu"))
    merge = model.config.vision_config.spatial_merge_size
    assert grid.tolist() == [[1, merge, merge]] and pixel_values.shape[0] == merge * merge
    features = per_image_features(model.get_image_features(pixel_values=pixel_values, image_grid_thw=grid))
    assert len(features) == 1 and features[0].shape == (1, model.config.text_config.hidden_size)
    assert pad_vision_calls(model, 0, torch.device("cpu")) is None  # one process: nothing to line up
