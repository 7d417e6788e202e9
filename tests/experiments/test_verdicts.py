"""An experiment's statistics and verdicts: bootstrap CIs, verdict rules, comparisons on known errors."""

import numpy as np
import pytest

from crowdvlm.evaluate.bootstrap import DiffCI, paired_bootstrap
from crowdvlm.experiments.results import ArmPredictions, SetResults
from crowdvlm.experiments.spec import load_experiment
from crowdvlm.experiments.verdicts import combine_verdicts, decide, directional_verdict, equivalence_verdict


def test_bootstrap_constant_difference_has_zero_width():
    a = np.array([[3.0, 4.0, 5.0], [1.0, 2.0, 9.0]])
    ci = paired_bootstrap(a, a - 0.5, n_boot=300)
    assert ci.diff == pytest.approx(0.5)
    assert ci.low == pytest.approx(0.5) and ci.high == pytest.approx(0.5)
    assert ci.per_seed == pytest.approx((0.5, 0.5))
    assert (ci.n_seeds, ci.n_images) == (2, 3)


def test_bootstrap_covers_true_difference_and_seed_noise_widens_it():
    rng = np.random.default_rng(0)
    base = rng.exponential(3.0, size=(1, 800))
    a = np.repeat(base, 3, axis=0) + rng.normal(0, 1, (3, 800))
    b = a + 0.4 + rng.normal(0, 1, (3, 800))  # b is worse by 0.4 on average
    ci = paired_bootstrap(a, b, n_boot=1000, seed=1)
    assert ci.low < -0.4 < ci.high
    assert ci.high < 0  # clearly significant
    # Add a large per-seed offset: the image-only interval ignores it, the two-level one must widen.
    shifted = b + np.array([[-1.0], [0.0], [1.0]])
    wide = paired_bootstrap(a, shifted, n_boot=1000, seed=1)
    narrow = paired_bootstrap(a[:1], shifted[:1], n_boot=1000, seed=1)
    assert (wide.high - wide.low) > 2 * (narrow.high - narrow.low)


def test_bootstrap_mask_restricts_cells():
    a = np.array([[1.0, 10.0, 1.0]])
    b = np.array([[0.0, 0.0, 0.0]])
    ci = paired_bootstrap(a, b, mask=np.array([[True, False, True]]), n_boot=200)
    assert ci.diff == pytest.approx(1.0)
    assert ci.high == pytest.approx(1.0)


@pytest.mark.parametrize(
    "a,b,kwargs,message",
    [
        (np.zeros((2, 3)), np.zeros((3, 2)), {}, "one shape"),
        (np.zeros(3), np.zeros(3), {}, "one shape"),
        (np.zeros((1, 0)), np.zeros((1, 0)), {}, "no cell"),
        (np.zeros((1, 2)), np.zeros((1, 2)), {"mask": np.zeros((1, 2), bool)}, "mask leaves no"),
    ],
)
def test_bootstrap_rejects_bad_input(a, b, kwargs, message):
    with pytest.raises(ValueError, match=message):
        paired_bootstrap(a, b, **kwargs)


def _ci(low, high):
    return DiffCI((low + high) / 2, low, high, 0.95, 100, 3, ())


@pytest.mark.parametrize(
    "low,high,expect,margin,verdict",
    [
        (-0.9, -0.1, "lower", 0.0, "reproduces"),
        (0.1, 0.9, "lower", 0.0, "does not reproduce"),
        (-0.3, 0.2, "lower", 0.0, "inconclusive"),
        (-0.3, 0.2, "lower", 0.5, "does not reproduce"),  # whole CI inside the practical margin
        (-0.3, 0.2, "lower", 0.25, "inconclusive"),
        (0.1, 0.9, "higher", 0.0, "reproduces"),
        (-0.9, -0.1, "higher", 0.05, "does not reproduce"),
    ],
)
def test_directional_verdict(low, high, expect, margin, verdict):
    assert directional_verdict(_ci(low, high), expect=expect, margin=margin) == verdict


@pytest.mark.parametrize(
    "low,high,verdict",
    [
        (-0.1, 0.1, "reproduces"),
        (0.3, 0.5, "does not reproduce"),
        (-0.5, -0.3, "does not reproduce"),
        (0.1, 0.3, "inconclusive"),
    ],
)
def test_equivalence_verdict(low, high, verdict):
    assert equivalence_verdict(_ci(low, high), margin=0.2) == verdict


def test_combine_verdicts():
    assert combine_verdicts(["reproduces", "reproduces"]) == "reproduces"
    assert combine_verdicts(["reproduces", "does not reproduce"]) == "does not reproduce"
    assert combine_verdicts(["reproduces", "inconclusive"]) == "inconclusive"


def _set(name, truths, arms, datasets=None):
    truths = np.asarray(truths)
    ids = [f"{name}-{i}" for i in range(len(truths))]
    ds = np.asarray(datasets if datasets is not None else ["synth-dots"] * len(truths))
    return SetResults(
        name, ids, truths, ds, {k: ArmPredictions((0, 1), np.asarray(v)) for k, v in arms.items()}
    )


def test_demo_comparisons_on_constructed_errors(tmp_path):
    from crowdvlm.demo.cli import DEMO_FILE

    exp_file = tmp_path / "demo_small.yaml"
    exp_file.write_text(f"extends: {DEMO_FILE}\nreport: {{n_boot: 500}}\n")
    exp = load_experiment(exp_file)
    rng = np.random.default_rng(3)
    n = 400
    truths = rng.integers(0, 41, n)
    noisy = lambda sd: np.clip(truths[None, :] + np.round(rng.normal(0, sd, (2, n))), 0, None).astype(int)  # noqa: E731
    base = {"base": noisy(8)[:1]}
    # In-domain: FGRPR best, binary worst -> C1 and C2 reproduce.
    test = _set("test", truths, {"sft": noisy(3), "grpo_binary": noisy(6), "grpo_fgrpr": noisy(1.5)})
    # OOD: FGRPR = SFT exactly (same predictions) -> C3a reproduces, C3b does not (no gain on large counts).
    same = noisy(3)
    ood = _set("ood", truths, {"sft": same, "grpo_binary": noisy(6), "grpo_fgrpr": same.copy()})
    for s in (test, ood):
        s.arms["base"] = ArmPredictions((0,), base["base"])
    out = decide(exp, {"test": test, "ood": ood, "ood_near": ood})
    assert out["claims"] == {"C1": "reproduces", "C2": "reproduces", "C3": "does not reproduce"}
    rows = {r["id"]: r for r in out["rows"]}
    assert list(rows) == ["C1", "C2", "C3a", "C3b", "M", "C3a-near", "C3b-near"]
    assert rows["C3a"]["verdict"] == "reproduces" and rows["C3a"]["ci"]["diff"] == 0.0
    assert rows["C3b"]["verdict"] == "does not reproduce" and rows["C3b"]["subset"] == "count >= 31"
    assert rows["C3b"]["ci"]["n_images"] == int((truths >= 31).sum())
    assert rows["M"]["verdict"] == "reproduces"
    assert rows["C1"]["mae_a"] > rows["C1"]["mae_b"]
    assert rows["C1"]["margin"] == pytest.approx(0.05 * rows["C1"]["mae_b"])


def test_untrained_arm_pairs_with_every_seed(tmp_path):
    from crowdvlm.experiments.verdicts import _compare

    exp_file = tmp_path / "x.yaml"
    from crowdvlm.demo.cli import DEMO_FILE

    exp_file.write_text(
        f"extends: {DEMO_FILE}\nreport: {{n_boot: 200}}\ncomparisons:\n"
        "  - {id: B, a: grpo_fgrpr, b: base, set: test, expect: lower, margin: 0.0}\n"
        "claims: null\n"
    )
    exp = load_experiment(exp_file)
    truths = np.arange(20)
    res = _set("test", truths, {"grpo_fgrpr": np.stack([truths, truths + 2])})
    res.arms["base"] = ArmPredictions((0,), (truths + 4)[None, :])
    row = _compare(exp, exp.comparisons[0], res, seed=1)
    assert row["ci"]["n_seeds"] == 2 and row["ci"]["diff"] == pytest.approx(-3.0)
    assert row["verdict"] == "reproduces"


def test_parse_failures_score_as_zero():
    arm = ArmPredictions((0,), np.array([[5, -1, 7]]))
    assert arm.errors(np.array([5, 4, 9])).tolist() == [[0.0, 4.0, 2.0]]
    assert arm.parsed.tolist() == [[True, False, True]]
