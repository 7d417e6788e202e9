"""Counting by pointing: the parser, the frame mapping, the matching and the point rewards (table-driven)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from crowdvlm.parsing import MAX_POINTS, parse_count, parse_points
from crowdvlm.pointing.frame import Frame, reading_order
from crowdvlm.pointing.matching import match_points
from crowdvlm.pointing.targets import point_answer
from crowdvlm.resize import ResizeRule, resized_size
from crowdvlm.rewards import REWARDS, BinaryCountReward, PointCountReward, build_reward


def listing(points, count=None) -> str:
    """A point answer for ``points`` stating ``count`` (default: the number of points)."""
    body = json.dumps([{"point_2d": list(p), "label": "person"} for p in points])
    return f"{body}<answer>{len(points) if count is None else count}</answer>"


# --------------------------------------------------------------------------- parser

MANY = [(i % 100, i // 100) for i in range(10_000)]

PARSE_CASES = [
    # (name, text, frame, max_points, points kept, stated, capped, outside)
    ("no points", "[]<answer>0</answer>", (100, 100), MAX_POINTS, 0, 0, 0, 0),
    ("no answer at all", "", None, MAX_POINTS, 0, None, 0, 0),
    ("prose, no points", "I see 12 people.", None, MAX_POINTS, 0, None, 0, 0),
    ("one point", listing([(3, 4)]), (10, 10), MAX_POINTS, 1, 1, 0, 0),
    ("y = 0 and x = 0 are inside", listing([(0, 0), (5, 0)]), (10, 10), MAX_POINTS, 2, 2, 0, 0),
    ("the far edge is inside", listing([(10, 10)]), (10, 10), MAX_POINTS, 1, 1, 0, 0),
    ("duplicates are kept", listing([(5, 5)] * 3), (10, 10), MAX_POINTS, 3, 3, 0, 0),
    ("outside: beyond width", listing([(11, 5), (5, 5)]), (10, 10), MAX_POINTS, 1, 2, 0, 1),
    ("outside: negative", listing([(-1, 5), (5, -0.5)]), (10, 10), MAX_POINTS, 0, 2, 0, 2),
    ("decimals", '[{"point_2d": [1.5, 2.25]}]<answer>1</answer>', (10, 10), MAX_POINTS, 1, 1, 0, 0),
    ("10^4 points, capped", listing(MANY), (100, 100), 500, 500, 10_000, 9_500, 0),
    ("10^4 points, default cap", listing(MANY), (100, 100), MAX_POINTS, MAX_POINTS, 10_000, 5_000, 0),
    (
        "truncated JSON keeps whole points",
        '[{"point_2d": [1, 2]}, {"point_2d": [3,',
        (10, 10),
        9,
        1,
        None,
        0,
        0,
    ),
    (
        "a number outside the answer is no count",
        '[{"point_2d": [1, 2]}] 7 people',
        (10, 10),
        9,
        1,
        None,
        0,
        0,
    ),
    (
        "points after the answer are ignored",
        '<answer>1</answer>[{"point_2d": [1, 2]}]',
        (10, 10),
        9,
        0,
        1,
        0,
        0,
    ),
    ("single quotes, no spaces", "[{'point_2d':[7,8]}]<answer>1</answer>", (10, 10), 9, 1, 1, 0, 0),
    (
        "huge coordinate is outside",
        '[{"point_2d": [123456789, 2]}]<answer>1</answer>',
        (10, 10),
        9,
        0,
        1,
        0,
        1,
    ),
    (
        "too many digits is no point",
        '[{"point_2d": [1234567890123, 2]}]<answer>1</answer>',
        (10, 10),
        9,
        0,
        1,
        0,
        0,
    ),
]


@pytest.mark.parametrize(
    "text, frame, cap, kept, stated, capped, outside",
    [c[1:] for c in PARSE_CASES],
    ids=[c[0] for c in PARSE_CASES],
)
def test_parse_points(text, frame, cap, kept, stated, capped, outside):
    answer = parse_points(text, frame, max_points=cap)
    assert (answer.count, answer.stated, answer.capped, answer.outside) == (kept, stated, capped, outside)


def test_parse_points_reads_conversational_completions_and_never_raises():
    message = [{"role": "assistant", "content": [{"type": "text", "text": listing([(1, 2)])}]}]
    assert parse_points(message).points == ((1.0, 2.0),)
    for junk in (None, 5, [[[]]], {"content": None}, "<answer>", '"point_2d": [', "\x00" * 1000):
        parse_points(junk)  # no exception
    nested: list = []
    for _ in range(5000):
        nested = [nested]
    assert parse_points(nested).count == 0


def test_parse_points_is_linear_on_adversarial_text():
    """Near-miss prefixes repeated 10^5 times: a backtracking pattern would take minutes, this takes < 1 s."""
    text = '"point_2d": [1, ' * 100_000
    assert parse_points(text).count == 0


def test_point_answer_keeps_the_stated_count_for_parse_count():
    """Evaluation's count (``parse_count``) reads a point answer's stated count, never a coordinate."""
    text = listing([(30, 40), (50, 60)], count=2)
    assert parse_count(text) == 2 and parse_count(text, strict=True) == 2


# --------------------------------------------------------------------------- frames


def processor_grid(processor, width: int, height: int) -> tuple[int, int]:
    """``(width, height)`` in pixels of the patch grid the processor really produced for an image."""
    from PIL import Image

    out = processor.image_processor(images=[Image.new("RGB", (width, height))], return_tensors="np")
    _, grid_h, grid_w = (int(v) for v in out["image_grid_thw"][0])
    patch = processor.image_processor.patch_size
    return grid_w * patch, grid_h * patch


SIZES = [(224, 168), (168, 224), (112, 112), (640, 480), (1000, 60), (30, 30), (57, 113), (3000, 2000)]


@pytest.mark.parametrize("width, height", SIZES)
def test_resized_frame_matches_the_processors_own_resize(tiny_model_dir, width, height):
    """The frame computed from the processor's settings is the size the processor really resizes to."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    frame = Frame.resized(width, height, ResizeRule.from_processor(processor))
    assert (frame.width, frame.height) == processor_grid(processor, width, height)


def test_one_resize_rule_for_frames_and_the_training_image_check(tiny_model_dir):
    """The pointing frame and the training image check read the same rule from the processor: they accept and
    refuse the same sizes (an aspect ratio over 200 is refused by both, with the image named)."""
    from transformers import AutoProcessor

    from crowdvlm.data.images import processor_size_rule

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    check, rule = processor_size_rule(processor), ResizeRule.from_processor(processor)
    check(640, 480)
    assert Frame.make("resized", 640, 480, rule).width == rule.size(640, 480)[0]
    for refuse in (lambda: check(10_000, 10), lambda: Frame.make("resized", 10_000, 10, rule)):
        with pytest.raises(ValueError, match="image 10000x10: the processor refuses it"):
            refuse()


def test_pixel_bounds_are_checked_wherever_they_are_set():
    with pytest.raises(ValueError, match="min_pixels .* larger than max_pixels"):
        ResizeRule(28, 5000, 4000)
    with pytest.raises(ValueError, match="positive integer"):
        ResizeRule(28, 0, 4000)


FRAME_CASES = [
    # (convention, image w, h, point in original pixels, point in the frame)
    ("resized", 224, 168, (112.0, 84.0), (56.0, 42.0)),
    ("resized", 224, 168, (0.0, 0.0), (0.0, 0.0)),
    ("resized", 168, 224, (168.0, 224.0), (84.0, 112.0)),  # portrait: the far corner maps to the far corner
    ("relative-1000", 640, 480, (320.0, 120.0), (500.0, 250.0)),
    ("original", 640, 480, (320.0, 120.0), (320.0, 120.0)),
]


@pytest.mark.parametrize("convention, width, height, original, framed", FRAME_CASES)
def test_frame_maps_points_both_ways(convention, width, height, original, framed):
    frame = Frame.make(convention, width, height, ResizeRule(28, 56 * 56, 112 * 112))
    assert frame.to_frame([original]).tolist() == [list(framed)]
    assert np.allclose(frame.from_frame(frame.to_frame([original])), [original])
    assert frame.to_frame([]).shape == (0, 2)


MAPPING_CASES = [
    # (name, original points of a 224x168 image, expected in its 112x84 frame)
    ("no points", [], []),
    ("y = 0", [[50.0, 0.0]], [[25.0, 0.0]]),
    ("duplicates stay duplicates", [[10.0, 10.0]] * 3, [[5.0, 5.0]] * 3),
    ("outside maps outside", [[-10.0, 200.0], [300.0, 84.0]], [[-5.0, 100.0], [150.0, 42.0]]),
    (
        "10^4 points",
        [[x % 224, x % 168] for x in range(10_000)],
        [[x % 224 / 2, x % 168 / 2] for x in range(10_000)],
    ),
]


@pytest.mark.parametrize(
    "original, framed", [c[1:] for c in MAPPING_CASES], ids=[c[0] for c in MAPPING_CASES]
)
def test_frame_mapping_edge_cases(original, framed):
    frame = Frame.resized(224, 168, ResizeRule(28, 56 * 56, 112 * 112))
    assert (frame.width, frame.height) == (112, 84)
    assert frame.to_frame(original).tolist() == framed
    assert frame.from_frame(framed).tolist() == [list(map(float, p)) for p in original]
    inside = parse_points(listing([tuple(p) for p in framed]), (frame.width, frame.height))
    assert inside.count + inside.capped + inside.outside == len(original)


def test_non_square_resize_scales_each_axis_by_its_own_factor():
    frame = Frame.resized(1000, 300, ResizeRule(28, 56 * 56, 112 * 112))
    sx, sy = frame.scale
    assert frame.width % 28 == 0 and frame.height % 28 == 0 and frame.width * frame.height <= 112 * 112
    assert sx == frame.width / 1000 and sy == frame.height / 300 and sx != sy


def test_frame_rejects_bad_input():
    with pytest.raises(ValueError, match="aspect ratio"):
        resized_size(10_000, 10, 28, 3136, 12544)
    with pytest.raises(ValueError, match="positive"):
        resized_size(0, 10, 28, 3136, 12544)
    with pytest.raises(ValueError, match="unknown point frame"):
        Frame.make("pixels", 10, 10)
    with pytest.raises(ValueError, match="needs the processor"):
        Frame.make("resized", 10, 10)
    with pytest.raises(ValueError, match="no Qwen-VL resize settings"):
        ResizeRule.from_processor(object())


def test_sft_target_lists_points_in_reading_order_and_parses_back():
    points = [[50.4, 20.0], [10.0, 20.2], [30.0, 5.0], [0.0, 0.0]]
    text = point_answer(points)
    assert [p for p in parse_points(text).points] == [(0, 0), (30, 5), (10, 20), (50, 20)]
    assert parse_points(text).consistent and parse_count(text, strict=True) == 4
    assert reading_order([]) == [] and point_answer([]) == "[]<answer>0</answer>"


# --------------------------------------------------------------------------- matching

MATCH_CASES = [
    # (name, pred, true, radius, matched)
    ("both empty", [], [], 2, 0),
    ("no prediction", [], [(1, 1)], 2, 0),
    ("nothing to find", [(1, 1)], [], 2, 0),
    ("exact", [(1, 1)], [(1, 1)], 2, 1),
    ("on the radius", [(0, 0)], [(3, 4)], 5, 1),
    ("just outside", [(0, 0)], [(3, 4.01)], 5, 0),
    ("duplicates match once", [(5, 5), (5, 5), (5, 5)], [(5, 5)], 2, 1),
    ("duplicate truths", [(5, 5)], [(5, 5), (5, 5)], 2, 1),
    # Greedy nearest-first would pair p0 with t1 (distance 1) and leave t0 unmatched; Hungarian finds 2.
    ("optimal, not greedy", [(0, 0), (2, 0)], [(-1.5, 0), (1, 0)], 1.6, 2),
    ("y = 0 row", [(x, 0) for x in range(10)], [(x + 0.5, 0) for x in range(10)], 0.6, 10),
]


@pytest.mark.parametrize(
    "pred, true, radius, matched", [c[1:] for c in MATCH_CASES], ids=[c[0] for c in MATCH_CASES]
)
def test_match_points(pred, true, radius, matched):
    m = match_points(pred, true, radius)
    assert m.matched == matched == len(m.pairs)
    assert len(set(m.pairs[:, 0])) == matched and len(set(m.pairs[:, 1])) == matched  # one to one
    for i, j in m.pairs:
        assert math.dist(pred[i], true[j]) <= radius


def test_matching_equals_a_dense_assignment_on_random_crowds():
    """Radius pruning gives the same number of matches as one dense Hungarian assignment."""
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial.distance import cdist

    rng = np.random.default_rng(1)
    for n, m, radius in [(40, 35, 3.0), (60, 60, 8.0), (5, 80, 20.0), (30, 30, 200.0)]:
        pred, true = rng.uniform(0, 100, (n, 2)), rng.uniform(0, 100, (m, 2))
        reach = cdist(pred, true) <= radius
        rows, cols = linear_sum_assignment(-reach.astype(float))
        assert match_points(pred, true, radius).matched == int(reach[rows, cols].sum())


def test_matching_metrics_and_bad_radius():
    m = match_points([(0, 0), (9, 9)], [(0, 1)], 2)
    assert (m.precision, m.recall, round(m.f1, 4)) == (0.5, 1.0, 0.6667)
    assert match_points([], [], 1).f1 == 1.0 and match_points([], [(1, 1)], 1).recall == 0.0
    with pytest.raises(ValueError, match="radius"):
        match_points([], [], 0)


# --------------------------------------------------------------------------- rewards


def columns(truth_points, image=(224, 168), frame=(112, 84)) -> dict:
    return {
        "solution": [len(truth_points)],
        "points": [truth_points],
        "image_size": [list(image)],
        "frame_size": [list(frame)],
    }


TRUTH = [
    [20.0, 20.0],
    [100.0, 60.0],
    [200.0, 160.0],
]  # original pixels; in the 112x84 frame: (10,10) (50,30) (100,80)

REWARD_CASES = [
    # (name, reward, params, completion, truth points, expected)
    ("f1 perfect", "point_f1", {}, listing([(10, 10), (50, 30), (100, 80)]), TRUTH, 1.0),
    (
        "f1 wrong frame: original pixels",
        "point_f1",
        {},
        listing([(20, 20), (100, 60), (200, 160)]),
        TRUTH,
        0.0,
    ),
    ("f1 two of three", "point_f1", {}, listing([(10, 10), (50, 30)]), TRUTH, 0.8),
    ("f1 duplicates", "point_f1", {}, listing([(10, 10)] * 3), TRUTH, 1 / 3),
    ("f1 empty image, no points", "point_f1", {}, "[]<answer>0</answer>", [], 1.0),
    ("f1 empty image, a point", "point_f1", {}, listing([(1, 1)]), [], 0.0),
    ("f1 no points listed", "point_f1", {}, "<answer>3</answer>", TRUTH, 0.0),
    ("f1 outside the frame never matches", "point_f1", {}, listing([(113, 10)]), [[224.0, 20.0]], 0.0),
    ("f1 radius", "point_f1", {"radius": 1}, listing([(12, 10)]), [[20.0, 20.0]], 0.0),
    ("f1 y = 0", "point_f1", {}, listing([(10, 0)]), [[20.0, 0.0]], 1.0),
    ("f1 10^4 points capped", "point_f1", {"max_points": 100}, listing(MANY), [[20.0, 0.0]], 2 / 101),
    ("consistency yes", "point_consistency", {}, listing([(1, 1), (2, 2)]), TRUTH, 1.0),
    ("consistency no", "point_consistency", {}, listing([(1, 1), (2, 2)], count=3), TRUTH, 0.0),
    ("consistency no answer", "point_consistency", {}, '[{"point_2d": [1, 1]}]', TRUTH, 0.0),
    ("consistency zero", "point_consistency", {}, "[]<answer>0</answer>", [], 1.0),
    ("consistency counts capped points", "point_consistency", {}, listing(MANY), TRUTH, 1.0),
    ("fgrpr on the pointed count", "point_fgrpr", {}, listing([(1, 1)] * 3, count=9), TRUTH, 1.5),
    ("fgrpr ignores the stated count", "point_fgrpr", {}, listing([(1, 1)], count=3), TRUTH, 0.0),
    ("fgrpr pointed 2 of 3", "point_fgrpr", {"band": 0.5}, listing([(1, 1)] * 2), TRUTH, 1.5 - 1 / 3),
    ("fgrpr y = 0 count 0", "point_fgrpr", {}, "[]<answer>5</answer>", [], 1.5),
    ("binary on the pointed count", "point_count", {"base": "binary"}, listing([(1, 1)] * 3), TRUTH, 1.0),
]


@pytest.mark.parametrize(
    "name, params, completion, truth, expected",
    [c[1:] for c in REWARD_CASES],
    ids=[c[0] for c in REWARD_CASES],
)
def test_point_rewards(name, params, completion, truth, expected):
    reward = build_reward(name, **params)
    assert reward([completion], **columns(truth)) == [pytest.approx(expected)]


def test_point_rewards_are_registered_picklable_and_named():
    import pickle

    for name in ("point_f1", "point_consistency", "point_fgrpr", "point_count"):
        reward = REWARDS[name]
        assert pickle.loads(pickle.dumps(reward)).__name__ == reward.__name__
    assert REWARDS["point_fgrpr"].__name__ == "point_fgrpr"
    assert build_reward("point_count", base="binary").__name__ == "point_count"
    assert PointCountReward(BinaryCountReward()).__name__ == "point_binary"


def test_point_rewards_refuse_missing_columns_and_bad_parameters():
    with pytest.raises(ValueError, match="output_format: points"):
        REWARDS["point_f1"](["[]"], solution=[0])
    with pytest.raises(ValueError, match="radius"):
        build_reward("point_f1", radius=0)
    with pytest.raises(ValueError, match="count reward"):
        build_reward("point_count", base="point_f1")
