"""Dynamic sampling (DAPO) for GRPO: groups whose completions carry no signal leave the loss.

A GRPO group whose ``num_generations`` completions all score alike on the *signal* gives no gradient of its own
(its advantages are 0) but still counts in the loss average and still pulls on the policy through the KL term.
Dynamic sampling filters such groups out of each generation batch. The signal that decides it is a recipe key:

- ``reward``: the weighted sum of the rewards (what GRPO normalises). With a graded reward (FGRPR) a group whose
  answers are all wrong still varies and survives; its shaping is then the only gradient it gives.
- ``exact`` / ``within_k``: a binary count metric (the answer equals the truth / is within
  ``dynamic_sampling_k`` of it, read as the 0/1 reward reads it); a group survives only when some of its answers
  are right and some wrong.

What happens to a filtered group (``dynamic_sampling``):

- ``drop``: its rows stay in the batch, so every rank makes the same model calls (the ZeRO-3 rule) and group
  sharing sees the layout it expects, but their loss mask and advantages are zeroed: they add nothing to the
  loss, the KL term included.
- ``resample``: before dropping, up to ``dynamic_sampling_max_resamples`` further generation batches are drawn
  (every rank draws the same number, decided on the gathered counts) and their surviving groups take the
  filtered groups' places; what is still filtered after the last draw is dropped.

Loss normalisation (never silent): the loss averages over the **surviving** groups only, over the whole
generation batch (all ranks, all accumulation steps). For the row-averaged losses (``grpo``, ``sapo``,
``luspo``, ``dr_grpo``) TRL averages each micro-batch over all its rows, so the loss is multiplied by
``rows / surviving rows`` of the generation batch; for the token-averaged ``dapo``, ``cispo`` and ``vespo`` the
token count TRL divides by (``num_items_in_batch``) is recounted over the surviving rows. Both are exact when
``steps_per_generation`` equals ``gradient_accumulation_steps`` (TRL's default); otherwise each optimiser step
averages over its survivors only in expectation. ``bnpo`` (a per-micro-batch token mean) and the entropy bonus
or MoE auxiliary loss (which the scale would also multiply) are refused. A batch with no surviving group has a
zero loss. Advantages are TRL's, computed over the whole batch before the filter (with
``scale_rewards: batch`` or ``multi_objective_aggregation: normalize_then_sum`` the batch statistics include the
filtered groups).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from crowdvlm.counts import read_count
from crowdvlm.parsing import completion_text, parse_count
from crowdvlm.train.errors import ConfigError

MODES = ("off", "drop", "resample")
SIGNALS = ("reward", "exact", "within_k")
ROW_AVERAGED_LOSSES = ("grpo", "sapo", "luspo", "dr_grpo")
TOKEN_AVERAGED_LOSSES = ("dapo", "cispo", "vespo")


@dataclass(frozen=True)
class DynamicSampling:
    """What dynamic sampling does: ``mode`` (drop / resample), ``signal`` (reward / exact / within_k), ``k``."""

    mode: str = "drop"
    signal: str = "exact"
    k: int = 1
    max_resamples: int = 2

    @classmethod
    def from_script(cls, script: Any) -> DynamicSampling | None:
        """The recipe's ``dynamic_sampling*`` keys, or ``None`` when ``dynamic_sampling: off``."""
        if script.dynamic_sampling == "off":
            return None
        return cls(
            script.dynamic_sampling,
            script.dynamic_sampling_signal,
            script.dynamic_sampling_k,
            script.dynamic_sampling_max_resamples,
        )


def check_dynamic_sampling(script: Any, training: Any, where: str = "") -> None:
    """Refuse the ``dynamic_sampling*`` keys that cannot work, naming the key to change."""
    if script.dynamic_sampling not in MODES:
        raise ConfigError(f"{where}dynamic_sampling must be one of {MODES}, got {script.dynamic_sampling!r}")
    if script.dynamic_sampling_signal not in SIGNALS:
        raise ConfigError(
            f"{where}dynamic_sampling_signal must be one of {SIGNALS}, got {script.dynamic_sampling_signal!r}"
        )
    if script.dynamic_sampling_k < 0 or script.dynamic_sampling_max_resamples < 0:
        raise ConfigError(f"{where}dynamic_sampling_k and dynamic_sampling_max_resamples must be >= 0")
    if script.dynamic_sampling == "off":
        return
    if not script.share_prompt:
        raise ConfigError(
            f"{where}dynamic_sampling is an option of GroupSharedGRPOTrainer: set share_prompt: true"
        )
    if training.loss_type not in ROW_AVERAGED_LOSSES + TOKEN_AVERAGED_LOSSES:
        raise ConfigError(
            f"{where}dynamic_sampling cannot renormalise loss_type {training.loss_type!r} (a per-micro-batch "
            f"mean): use one of {ROW_AVERAGED_LOSSES + TOKEN_AVERAGED_LOSSES}"
        )
    if training.loss_type in ROW_AVERAGED_LOSSES and (
        training.entropy_coef != 0 or training.use_adaptive_entropy
    ):
        raise ConfigError(
            f"{where}dynamic_sampling with loss_type {training.loss_type} rescales the whole loss, entropy "
            "bonus included: set entropy_coef: 0 or use loss_type: dapo"
        )


def count_hits(completions: Sequence[Any], solution: Sequence[Any], k: int) -> list[float]:
    """1.0 where the answered count is within ``k`` of the truth (``k = 0``: exact), else 0.0 (strict parsing)."""
    hits = []
    for completion, truth in zip(completions, solution, strict=True):
        pred = parse_count(completion_text(completion), strict=True)
        hits.append(1.0 if pred is not None and abs(pred - read_count(truth)) <= k else 0.0)
    return hits


def groups_with_signal(values: torch.Tensor, num_generations: int) -> torch.Tensor:
    """One bool per group of ``num_generations`` consecutive rows: do its (non-NaN) values differ?"""
    grouped = values.view(-1, num_generations).float()
    scored = ~torch.isnan(grouped)
    high = torch.where(scored, grouped, -math.inf).amax(dim=1)
    low = torch.where(scored, grouped, math.inf).amin(dim=1)
    return (scored.sum(dim=1) > 1) & ~torch.isclose(high, low)


def loss_scale(loss_type: str, rows: int, kept_rows: int) -> float:
    """The factor that turns TRL's row-averaged loss into an average over the surviving rows (1 otherwise)."""
    if loss_type not in ROW_AVERAGED_LOSSES:
        return 1.0
    return rows / kept_rows if kept_rows else 0.0


def drop_rows(output: dict[str, Any], keep: torch.Tensor, loss_type: str, scale: float, kept_tokens) -> None:
    """Take the rows where ``keep`` is False out of the loss of one generation batch, in place.

    Their advantages become 0 and their loss mask (TRL's ``tool_mask``, multiplied into the completion mask in
    the loss) 0; ``loss_scale`` (row-averaged losses) or ``num_items_in_batch`` (token-averaged) is set so that
    the loss averages over the surviving rows only (module docstring).
    """
    keep_f = keep.to(output["advantages"].dtype)
    output["advantages"] = output["advantages"] * (
        keep_f if output["advantages"].dim() == 1 else keep_f[:, None]
    )
    row_mask = keep.long()[:, None].expand_as(output["completion_mask"])
    output["tool_mask"] = row_mask if "tool_mask" not in output else output["tool_mask"] * row_mask
    if loss_type in TOKEN_AVERAGED_LOSSES:
        output["num_items_in_batch"] = kept_tokens
    output["loss_scale"] = torch.tensor(scale, device=output["advantages"].device)


# --------------------------------------------------------------------------- the trainer's side


class DynamicSamplingMixin:
    """The trainer's side of dynamic sampling, mixed in before ``trl.GRPOTrainer`` (``GroupSharedGRPOTrainer``).

    Adds the ``dynamic_sampling`` constructor keyword (``None``: off, TRL's behaviour unchanged) and three hooks:
    the signal is computed with the rewards, the filter runs on each training generation batch (its resample
    draws call the next class's ``_generate_and_score_completions``, so group sharing applies to them too), and
    the loss is multiplied by the batch's ``loss_scale``.
    """

    def __init__(self, *args: Any, dynamic_sampling: DynamicSampling | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.dynamic_sampling = dynamic_sampling
        if dynamic_sampling is not None:
            check_trainer_supports(self)

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        output = super()._generate_and_score_completions(inputs)
        if self.dynamic_sampling is None or not self.model.training:
            return output
        return filter_generation_batch(self, inputs, output, super()._generate_and_score_completions)

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list) -> torch.Tensor:
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        if self.dynamic_sampling is not None:
            self._dynamic_sampling_signal = signal_of_batch(self, inputs, completions, rewards_per_func)
        return rewards_per_func

    def _compute_loss(self, model, inputs):
        loss = super()._compute_loss(model, inputs)
        scale = inputs.get("loss_scale")
        return loss if scale is None else loss * scale


def signal_of_batch(trainer: Any, inputs: list[dict], completions: list, rewards_per_func) -> torch.Tensor:
    """The signal of every row of the generation batch, gathered over the processes (like TRL's rewards)."""
    ds: DynamicSampling = trainer.dynamic_sampling
    if ds.signal == "reward":  # rewards_per_func is already gathered
        weights = trainer.reward_weights.to(rewards_per_func.device)
        values = (rewards_per_func * weights.unsqueeze(0)).nansum(dim=1)
        return values.masked_fill(torch.isnan(rewards_per_func).all(dim=1), math.nan)
    k = 0 if ds.signal == "exact" else ds.k
    hits = count_hits(completions, [row["solution"] for row in inputs], k)
    return trainer.accelerator.gather(torch.tensor(hits, device=trainer.accelerator.device))


def _local_keep(trainer: Any, n_local: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(groups with signal over the whole batch, this process's rows of them) from the last signal."""
    groups = groups_with_signal(trainer._dynamic_sampling_signal, trainer.num_generations)
    rows = groups.repeat_interleave(trainer.num_generations)
    start = trainer.accelerator.process_index * n_local
    return groups, rows[start : start + n_local].to(trainer.accelerator.device)


def filter_generation_batch(trainer: Any, inputs: list[dict], output: dict[str, Any], generate) -> dict:
    """Dynamic sampling on one generation batch (``output`` of ``generate(inputs)``); logs what it filtered.

    ``resample`` draws up to ``max_resamples`` further batches with :func:`reserve_inputs` while any process
    still has a filtered group (every process draws as often: the count is gathered), then drops the rest.
    """
    ds: DynamicSampling = trainer.dynamic_sampling
    n_local = output["advantages"].size(0)
    groups, keep = _local_keep(trainer, n_local)
    metrics = trainer._metrics["train"]
    metrics["dynamic_sampling/frac_groups_filtered"].append(1.0 - groups.float().mean().item())
    draws = 0
    while ds.mode == "resample" and draws < ds.max_resamples:
        missing = trainer.accelerator.gather((~keep).sum().reshape(1)).sum().item()
        if missing == 0:
            break
        draws += 1
        extra = generate(reserve_inputs(trainer, len(inputs)))
        _, extra_keep = _local_keep(trainer, n_local)
        output, keep = replace_groups(output, keep, extra, extra_keep, trainer)
    if ds.mode == "resample":
        metrics["dynamic_sampling/resample_draws"].append(float(draws))
    loss_mask = output["completion_mask"] * output.get("tool_mask", 1)
    kept_tokens = trainer.accelerator.gather((loss_mask * keep[:, None]).sum().reshape(1)).sum()
    kept_rows = trainer.accelerator.gather(keep.sum().reshape(1)).sum().item()
    rows = n_local * trainer.accelerator.num_processes
    metrics["dynamic_sampling/frac_rows_in_loss"].append(kept_rows / rows)
    drop_rows(output, keep, trainer.loss_type, loss_scale(trainer.loss_type, rows, kept_rows), kept_tokens)
    return output


def reserve_inputs(trainer: Any, n_local: int) -> list[dict]:
    """This process's rows of the next resample draw: whole groups of prompts from a second shuffled pass.

    The order is a permutation of the training set seeded by ``seed + 1`` (then ``+ 2``, ... when it runs out),
    the same on every process; each process takes its contiguous slice, as TRL's sampler splits a batch.
    """
    g = trainer.num_generations
    state = trainer.__dict__.setdefault("_dynamic_sampling_reserve", {"queue": [], "passes": 0})
    world, rank = trainer.accelerator.num_processes, trainer.accelerator.process_index
    prompts_needed = n_local * world // g
    while len(state["queue"]) < prompts_needed:
        state["passes"] += 1
        generator = torch.Generator().manual_seed(trainer.args.seed + state["passes"])
        state["queue"] += torch.randperm(len(trainer.train_dataset), generator=generator).tolist()
    prompts, state["queue"] = state["queue"][:prompts_needed], state["queue"][prompts_needed:]
    rows = [i for i in prompts for _ in range(g)][rank * n_local : (rank + 1) * n_local]
    return [trainer.train_dataset[i] for i in rows]


# Fields of a generation batch by how their second dimension is laid out (TRL 1.16's output).
_PROMPT_SIDE = {"prompt_ids": "pad", "prompt_mask": 0}
_COMPLETION_SIDE = {
    "completion_ids": "pad",
    "completion_mask": 0,
    "tool_mask": 0,
    "old_per_token_logps": 0.0,
    "ref_per_token_logps": 0.0,
    "sampling_per_token_logps": 0.0,
    "importance_sampling_ratio": 0.0,  # vLLM's token-level ratios (B, C); its sequence-level ones (B, 1) are per row
}
_BOTH_SIDES = ("mm_token_type_ids", "token_type_ids")  # prompt part, then completion part
_PER_ROW = ("advantages",)
_BATCH_WIDE = ("num_items_in_batch", "loss_scale")  # recomputed after the filter


def _padded(value: torch.Tensor, width: int, fill: float, left: bool) -> torch.Tensor:
    extra = width - value.size(1)
    if extra == 0:
        return value
    pad = value.new_full((value.size(0), extra, *value.shape[2:]), fill)
    return torch.cat([pad, value] if left else [value, pad], dim=1)


def _aligned(batch: dict[str, Any], key: str, prompt_width: int, completion_width: int, pad_id: int):
    value = batch[key]
    if key in _PROMPT_SIDE:
        fill = pad_id if _PROMPT_SIDE[key] == "pad" else _PROMPT_SIDE[key]
        return _padded(value, prompt_width, fill, left=True)
    if key in _COMPLETION_SIDE:
        fill = pad_id if _COMPLETION_SIDE[key] == "pad" else _COMPLETION_SIDE[key]
        return _padded(value, completion_width, fill, left=False)
    split = batch["prompt_ids"].size(1)  # _BOTH_SIDES
    return torch.cat(
        [
            _padded(value[:, :split], prompt_width, 0, True),
            _padded(value[:, split:], completion_width, 0, False),
        ],
        dim=1,
    )


def _sequence_level(key: str, base: dict[str, Any], donor: dict[str, Any]) -> bool:
    """vLLM's importance-sampling ratios in a ``sequence_*`` mode: one per row, ``(B, 1)`` in both batches (with
    completions one token wide, token-level ratios are that shape too, and either reading merges them alike)."""
    return key == "importance_sampling_ratio" and base[key].size(1) == donor[key].size(1) == 1


def merge_rows(base: dict[str, Any], donor: dict[str, Any], rows: list[tuple[int, int]], pad_id: int) -> dict:
    """``base`` with row ``dst`` replaced by ``donor``'s row ``src`` for each ``(dst, src)``, padding aligned.

    Raises:
        ValueError: a field whose layout is not known here.
    """
    from trl.trainer.utils import split_pixel_values_by_grid, unsplit_pixel_values_by_grid

    base, donor = split_pixel_values_by_grid(base), split_pixel_values_by_grid(donor)
    if set(base) != set(donor):
        raise ValueError(f"resampled batch has fields {sorted(donor)}, the batch has {sorted(base)}")
    prompt_width = max(base["prompt_ids"].size(1), donor["prompt_ids"].size(1))
    completion_width = max(base["completion_ids"].size(1), donor["completion_ids"].size(1))
    dst = [d for d, _ in rows]
    src = [s for _, s in rows]
    merged: dict[str, Any] = {}
    for key, value in base.items():
        if key in _BATCH_WIDE or value is None:
            merged[key] = value
        elif isinstance(value, list):
            merged[key] = list(value)
            for d, s in rows:
                merged[key][d] = donor[key][s]
        elif key in _PER_ROW or key in _PROMPT_SIDE or key in _COMPLETION_SIDE or key in _BOTH_SIDES:
            if key in _PER_ROW or _sequence_level(key, base, donor):
                mine, theirs = value.clone(), donor[key]
            else:
                mine = _aligned(base, key, prompt_width, completion_width, pad_id).clone()
                theirs = _aligned(donor, key, prompt_width, completion_width, pad_id)
            mine[dst] = theirs[src].to(mine.dtype)
            merged[key] = mine
        else:
            raise ValueError(f"dynamic_sampling: resample cannot merge the batch field {key!r}; use drop")
    return unsplit_pixel_values_by_grid(merged)


def replace_groups(output: dict, keep: torch.Tensor, extra: dict, extra_keep: torch.Tensor, trainer: Any):
    """Put ``extra``'s surviving groups in place of ``output``'s filtered ones (this process's rows)."""
    g = trainer.num_generations
    dropped = [i for i in range(keep.numel() // g) if not keep[i * g]]
    fresh = [i for i in range(extra_keep.numel() // g) if extra_keep[i * g]]
    pairs = list(zip(dropped, fresh, strict=False))
    if not pairs:
        return output, keep
    rows = [(d * g + j, f * g + j) for d, f in pairs for j in range(g)]
    merged = merge_rows(output, extra, rows, trainer._tokenizer.pad_token_id)
    keep = keep.clone()
    for d, _ in pairs:
        keep[d * g : (d + 1) * g] = True
    return merged, keep


def check_trainer_supports(trainer: Any) -> None:
    """Refuse, at construction, what the recipe checks cannot see: a MoE auxiliary loss, groups split by resample.

    Raises:
        ValueError: naming what to change.
    """
    if trainer.loss_type in ROW_AVERAGED_LOSSES and trainer.aux_loss_enabled:
        raise ValueError(
            f"dynamic_sampling with loss_type {trainer.loss_type} would rescale the MoE auxiliary loss too: "
            "use loss_type dapo"
        )
    local_rows = trainer.args.per_device_train_batch_size * trainer.args.steps_per_generation
    if trainer.dynamic_sampling.mode == "resample" and local_rows % trainer.num_generations:
        raise ValueError(
            f"dynamic_sampling: resample replaces whole groups on each process: per_device_train_batch_size x "
            f"steps_per_generation ({local_rows}) must be a multiple of num_generations ({trainer.num_generations})"
        )
