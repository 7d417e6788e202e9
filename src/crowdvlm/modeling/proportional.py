"""A model scaled down from a real checkpoint so that its compute splits as the real one's does.

The benchmark's tiny models (hidden 64, 2 layers) spend most of a GRPO step outside the language model, so a
speed-up measured on them says little about a real model. :func:`scaled_model` divides a real model's
(:mod:`crowdvlm.modeling.real_configs`) widths by 8 (head sizes kept, so heads are divided instead), and then picks the depths
of the decoder (whole groups of its real layer pattern) and of the vision tower, and the vocabulary, so that
the shares of one sample's forward compute spent in the vision tower, the decoder layers and the LM head stay
those of the real model (:func:`compute_shares` prints both).

The compute of one sample (one image of ``image_tokens`` merged tokens, a prompt of ``prompt_tokens``
tokens, ``completion_tokens`` new tokens) counts multiply-adds of the forward pass:

- vision tower: each patch row through the patch embedding and every block (projections, MLP, attention over
  the image, or over a window for Qwen2.5-VL's windowed blocks), each merged token through the merger (and
  Qwen3-VL's deepstack mergers);
- decoder layers: each prompt and completion token through every layer (projections, MLP, causal attention
  over half the sequence on average; a Gated DeltaNet layer's projections, short convolution and state
  update/readout, about three ``d_k x d_v`` products per value head);
- LM head: each completion token (the log-prob passes score completions only).

Norms, activations and rotary embeddings are left out; they are small at both sizes.
"""

from __future__ import annotations

from dataclasses import replace

from crowdvlm.modeling.real_configs import REAL_SHAPES, RealModel, TextShape, VisionShape

WIDTH_DIVISOR = 8
BUDGET_GMACS = 20.0  # one sample's forward: a stock GRPO step (G = 8) runs about 40 of them
TOKENIZER_ROWS = 576  # the tiny tokenizer's tokens, rounded up to 64: the fewest vocabulary rows
PARTS = ("vision", "decoder", "lm_head")


def vision_macs(vision: VisionShape, image_tokens: int) -> int:
    """Multiply-adds of the vision tower on one image of ``image_tokens`` merged tokens."""
    merge = vision.spatial_merge_size**2
    patches = image_tokens * merge
    h, i = vision.hidden_size, vision.intermediate_size
    embed = 3 * vision.temporal_patch_size * vision.patch_size**2 * h
    mlp = (3 if vision.mlp == "swiglu" else 2) * h * i
    window = patches if vision.window_size is None else (vision.window_size // vision.patch_size) ** 2
    blocks = 0
    for block in range(vision.depth):
        context = (
            patches if vision.window_size is None or block in vision.full_blocks else min(window, patches)
        )
        blocks += 4 * h * h + mlp + 2 * context * h
    merger = (merge * h) ** 2 + merge * h * vision.out_hidden_size
    return patches * (embed + blocks) + image_tokens * merger * (1 + len(vision.deepstack))


def decoder_token_macs(text: TextShape, context: int) -> int:
    """Multiply-adds of one token through every decoder layer, attending to ``context`` earlier tokens."""
    h = text.hidden_size
    mlp = 3 * h * text.intermediate_size
    q = text.num_heads * text.head_dim
    full = h * q * (2 if text.attn_output_gate else 1) + 2 * h * text.num_kv_heads * text.head_dim + q * h
    full += 2 * context * q
    keys = text.linear_num_key_heads * text.linear_key_head_dim
    values = text.linear_num_value_heads * text.linear_value_head_dim
    linear = h * (2 * keys + values) + h * values + 2 * h * text.linear_num_value_heads + values * h
    linear += text.linear_conv_kernel_dim * (2 * keys + values)
    linear += 3 * text.linear_num_value_heads * text.linear_key_head_dim * text.linear_value_head_dim
    return sum(mlp + (linear if kind == "linear_attention" else full) for kind in text.layer_types)


def sample_macs(
    model: RealModel, image_tokens: int, prompt_tokens: int, completion_tokens: int
) -> dict[str, int]:
    """Forward multiply-adds of one sample, per part (``vision``, ``decoder``, ``lm_head``)."""
    tokens = prompt_tokens + completion_tokens
    return {
        "vision": vision_macs(model.vision, image_tokens),
        "decoder": tokens * decoder_token_macs(model.text, tokens // 2),
        "lm_head": completion_tokens * model.text.hidden_size * model.text.vocab_size,
    }


def compute_shares(model: RealModel, image_tokens: int, prompt_tokens: int, completion_tokens: int) -> dict:
    """Each part's share of one sample's forward compute (sums to 1), and the total in GMACs."""
    macs = sample_macs(model, image_tokens, prompt_tokens, completion_tokens)
    total = sum(macs.values())
    return {part: macs[part] / total for part in PARTS} | {"gmacs": total / 1e9}


def _divide(value: int, divisor: int = WIDTH_DIVISOR, multiple: int = 1) -> int:
    return max(multiple, round(value / divisor / multiple) * multiple)


def _scaled_text(text: TextShape, num_layers: int) -> TextShape:
    return replace(
        text,
        hidden_size=_divide(text.hidden_size, multiple=16),
        intermediate_size=_divide(text.intermediate_size, multiple=16),
        num_layers=num_layers,
        num_heads=_divide(text.num_heads),
        num_kv_heads=_divide(text.num_kv_heads),
        layer_types=text.layer_types[-num_layers:],  # whole groups of the pattern: ends in full attention
        linear_num_key_heads=_divide(text.linear_num_key_heads) if text.linear_num_key_heads else 0,
        linear_num_value_heads=_divide(text.linear_num_value_heads) if text.linear_num_value_heads else 0,
    )


def _scaled_vision(vision: VisionShape, depth: int, out_hidden_size: int) -> VisionShape:
    heads = _divide(vision.num_heads)
    hidden = _divide(vision.hidden_size, multiple=2 * heads)  # an even head_dim for the rotary embedding
    full = tuple(b for b in range(depth) if (b + 1) % 8 == 0) or (depth - 1,)
    return replace(
        vision,
        depth=depth,
        hidden_size=hidden,
        intermediate_size=_divide(vision.intermediate_size, multiple=4),
        num_heads=heads,
        out_hidden_size=out_hidden_size,
        full_blocks=full if vision.window_size is not None else (),
        deepstack=tuple(range(min(len(vision.deepstack), depth))),
    )


def scaled_model(
    family: str,
    image_tokens: int,
    prompt_tokens: int,
    completion_tokens: int,
    *,
    budget_gmacs: float = BUDGET_GMACS,
    min_vocab: int = 0,
) -> RealModel:
    """The real model of ``family`` scaled down with its shares kept (see the module docstring).

    Widths are divided by :data:`WIDTH_DIVISOR`; the decoder depth (whole groups of the real layer pattern) and
    the vision depth are the pair, within ``budget_gmacs`` per sample, whose vision-to-decoder split is closest
    to the real one (the larger pair on a tie); the vocabulary then gives the LM head its real share (a
    multiple of 64, at least ``min_vocab`` rows: the tokenizer's).
    """
    real = REAL_SHAPES[family]
    target = compute_shares(real, image_tokens, prompt_tokens, completion_tokens)
    target_split = target["vision"] / (target["vision"] + target["decoder"])
    period = 4 if "linear_attention" in real.text.layer_types else 1

    def build(layers: int, depth: int) -> RealModel:
        text = _scaled_text(real.text, layers)
        vision = _scaled_vision(real.vision, depth, text.hidden_size)
        return RealModel(f"{real.name} scaled down (shape r)", text, vision)

    candidates = []
    for layers in range(period, real.text.num_layers + 1, period):
        for depth in range(1, real.vision.depth + 1):
            macs = sample_macs(build(layers, depth), image_tokens, prompt_tokens, completion_tokens)
            body = macs["vision"] + macs["decoder"]
            if body / 1e9 <= budget_gmacs:
                candidates.append((round(abs(macs["vision"] / body - target_split), 3), -body, layers, depth))
    if not candidates:
        raise ValueError(f"no scaled {real.name} fits {budget_gmacs} GMACs per sample")
    *_, layers, depth = min(candidates)
    model = build(layers, depth)
    macs = sample_macs(model, image_tokens, prompt_tokens, completion_tokens)
    head_macs = target["lm_head"] / (1 - target["lm_head"]) * (macs["vision"] + macs["decoder"])
    vocab = max(min_vocab, -(-round(head_macs / (completion_tokens * model.text.hidden_size)) // 64) * 64)
    return replace(model, text=replace(model.text, vocab_size=vocab))


def text_overrides(text: TextShape) -> dict:
    """``text_config`` entries of a transformers config for ``text``."""
    overrides = dict(
        hidden_size=text.hidden_size,
        intermediate_size=text.intermediate_size,
        num_hidden_layers=text.num_layers,
        num_attention_heads=text.num_heads,
        num_key_value_heads=text.num_kv_heads,
        head_dim=text.head_dim,
        layer_types=list(text.layer_types),
        mrope_section=list(text.mrope_section),
    )
    if text.linear_num_value_heads:
        overrides |= dict(
            linear_num_key_heads=text.linear_num_key_heads,
            linear_num_value_heads=text.linear_num_value_heads,
            linear_key_head_dim=text.linear_key_head_dim,
            linear_value_head_dim=text.linear_value_head_dim,
            linear_conv_kernel_dim=text.linear_conv_kernel_dim,
        )
    return overrides


def vision_overrides(vision: VisionShape) -> dict:
    """``vision_config`` entries of a transformers config for ``vision``."""
    overrides = dict(
        depth=vision.depth,
        hidden_size=vision.hidden_size,
        intermediate_size=vision.intermediate_size,
        num_heads=vision.num_heads,
        out_hidden_size=vision.out_hidden_size,
    )
    if vision.window_size is not None:
        overrides |= dict(window_size=vision.window_size, fullatt_block_indexes=list(vision.full_blocks))
    if vision.deepstack:
        overrides["deepstack_visual_indexes"] = list(vision.deepstack)
    return overrides


def shares_table(
    family: str, scaled: RealModel, image_tokens: int, prompt_tokens: int, completion_tokens: int
) -> dict:
    """``{"real": shares, "scaled": shares}`` of ``family``'s real model and of ``scaled``."""
    return {
        "real": compute_shares(REAL_SHAPES[family], image_tokens, prompt_tokens, completion_tokens),
        "scaled": compute_shares(scaled, image_tokens, prompt_tokens, completion_tokens),
    }


# Text tokens of the benchmark's counting prompt around the image (chat template, question): the scaled model is
# chosen for prompts of image tokens + this many; the shares printed use the measured prompt length.
PROMPT_TEXT_TOKENS = 40


def build_scaled_model(family: str, out_dir, image_size: int, new_tokens: int, seed: int = 0):
    """Save the scaled-down model of ``family`` for ``image_size``-px images (:func:`scaled_model`).

    Returns:
        ``(folder, scaled)``: the model folder (random weights, the tiny tokenizer, a processor that keeps the
        image at full resolution) and its :class:`RealModel` figures.
    """
    from crowdvlm.modeling.tiny import build_tiny_model
    from crowdvlm.modeling.tiny_families import TOKEN_PIXELS

    image_tokens = (image_size // TOKEN_PIXELS[family]) ** 2
    scaled = scaled_model(
        family, image_tokens, image_tokens + PROMPT_TEXT_TOKENS, new_tokens, min_vocab=TOKENIZER_ROWS
    )
    folder = build_tiny_model(
        out_dir,
        family=family,
        seed=seed,
        max_pixels=image_size * image_size,
        vocab_rows=scaled.text.vocab_size,
        text_overrides=text_overrides(scaled.text),
        vision_overrides=vision_overrides(scaled.vision),
    )
    return folder, scaled
