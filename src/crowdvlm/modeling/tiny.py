"""Tiny random-weight Qwen VLMs (Qwen2.5-VL, Qwen3-VL, Qwen3.5), built offline, for tests, recipes and the demo.

Each model has the real architecture of its family at toy sizes (:mod:`crowdvlm.modeling.tiny_families`),
so every code path that runs on the 3B-9B checkpoints runs here, in well under a second per training step
on a CPU. The tokenizer, the same for every family, is a byte-level BPE trained locally on
the vocabulary this project's prompts and answers use, with Qwen's pre-tokenizer (so every digit is its
own token, as in real Qwen), Qwen's special tokens appended after the learned vocabulary and the
family's chat template. Nothing is downloaded; the result is deterministic given ``seed``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

logger = logging.getLogger(__name__)

# Qwen2.5-VL's special tokens, in Qwen's id order, appended after the learned BPE vocabulary.
QWEN_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# The Qwen2-VL / Qwen2.5-VL chat template (default system turn, one vision block per image or video).
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}"
    "{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Qwen3-VL / Qwen3.5's chat template reduced to what counting prompts use: no default system turn, the same
# vision block per image or video (the real templates add tool calls and thinking switches).
QWEN3_VL_CHAT_TEMPLATE = QWEN2_VL_CHAT_TEMPLATE.replace(
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}",
    "",
)
CHAT_TEMPLATES = {
    "qwen2_5_vl": QWEN2_VL_CHAT_TEMPLATE,
    "qwen3_vl": QWEN3_VL_CHAT_TEMPLATE,
    "qwen3_5": QWEN3_VL_CHAT_TEMPLATE,
}

# Words the tokenizer should hold as whole tokens: the paper's prompts, the questions of the counting
# datasets, the short templated reasoning the SFT targets use and the chat template's own text. BPE merges
# are learned from these; anything else still encodes, byte by byte.
_OBJECTS = (
    "people",
    "persons",
    "pedestrians",
    "heads",
    "sheep",
    "cows",
    "animals",
    "vehicles",
    "cars",
    "wheat heads",
    "plants",
    "leaves",
    "manatees",
    "fish",
    "birds",
    "dots",
    "objects",
    "trees",
    "boats",
    "crowd",
)
_SENTENCES = (
    "Please count the number of {obj} in the image.",
    "How many {obj} are in the image?",
    "How many {obj} are there in this picture?",
    "Count the {obj}.",
    "{question}. First output the thinking process in <think> </think> tags and then output the final "
    "answer in <answer> </answer> tags and the answer should be a number only.",
    "{question} First output the thinking process in <think> </think> tags and then output the final "
    "answer in <answer> </answer> tags.",
    "{question} Output the final answer in <answer> </answer> tags and the answer should be a number only.",
    "<think>I count each object in the image once, from the top left to the bottom right. There are {n} "
    "{obj} in total.</think><answer>{n}</answer>",
    "<think>I'll carefully examine the image, counting each {obj} as I go.</think> <answer>{n}</answer>",
    "<answer>{n}</answer>",
    "system\nYou are a helpful assistant.\nuser\nassistant\n",
    "Picture 1: Video 1: The answer is {n}.",
)


def _tokenizer_corpus() -> list[str]:
    """Deterministic training text for the tiny BPE (no randomness: the vocabulary never depends on seed)."""
    lines = []
    for i, obj in enumerate(_OBJECTS):
        question = f"Please count the number of {obj} in the image"
        for j, sentence in enumerate(_SENTENCES):
            n = (i * 37 + j * 11) % 1000
            lines.append(sentence.format(obj=obj, question=question, n=n))
    lines.append(" ".join(str(d) for d in range(10)))
    return lines


def train_tiny_tokenizer(vocab_size: int = 512):
    """Train a byte-level BPE on the prompt vocabulary and wrap it as a Qwen2 tokenizer.

    Args:
        vocab_size: target size of the learned vocabulary, before Qwen's special tokens are appended.

    Returns:
        A ``transformers.Qwen2Tokenizer`` whose ids run 0..V-1 for BPE tokens, then the special tokens.
    """
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import AddedToken, Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    # Same normaliser and pre-tokeniser as Qwen2: digits split one per token, byte-level alphabet.
    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_tokenizer_corpus(), trainer=trainer)

    state = json.loads(bpe.to_str())["model"]
    vocab: dict[str, int] = state["vocab"]
    # tokenizers >= 0.20 stores merges as [left, right] pairs; Qwen2Tokenizer needs tuples.
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in state["merges"]]

    # Constructed with <|endoftext|> as eos so that it takes the first id after the BPE vocabulary, as in
    # Qwen; the chat models' eos <|im_end|> is set once all specials hold their Qwen order.
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        errors="replace",
        model_max_length=32768,
        clean_up_tokenization_spaces=False,
    )
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN_SPECIAL_TOKENS])
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.chat_template = QWEN2_VL_CHAT_TEMPLATE
    return tokenizer


def build_tiny_model(
    out_dir: str | Path,
    *,
    family: str = "qwen2_5_vl",
    seed: int = 0,
    hidden_size: int = 64,
    num_layers: int = 2,
    vision_hidden_size: int = 64,
    vision_depth: int = 2,
    vocab_size: int = 512,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    vocab_rows: int | None = None,
    text_overrides: dict | None = None,
    vision_overrides: dict | None = None,
) -> Path:
    """Build a tiny random-weight model of a Qwen VLM family and save it in Hugging Face format.

    The folder holds ``config.json``, ``generation_config.json``, ``model.safetensors``, the tokenizer
    (``tokenizer.json``, ``tokenizer_config.json``, ``chat_template.jinja``) and ``processor_config.json``
    (image and video processors), so ``AutoModelForImageTextToText.from_pretrained(out_dir)`` and
    ``AutoProcessor.from_pretrained(out_dir)`` load it offline. Every family shares the digit-per-token
    tokenizer; the architectures are described in :mod:`crowdvlm.modeling.tiny_families`.

    Args:
        out_dir: folder to write (created if missing).
        family: ``qwen2_5_vl`` (default), ``qwen3_vl`` or ``qwen3_5``.
        seed: seeds the weight initialisation; the same seed gives byte-identical files.
        hidden_size: text decoder width (a multiple of 8).
        num_layers: text decoder layers (Qwen3.5: at least 2, the last full attention, see
            :func:`~crowdvlm.modeling.tiny_families.qwen3_5_layer_types`).
        vision_hidden_size: vision tower width.
        vision_depth: vision tower blocks (Qwen2.5-VL: the last one full attention, the others windowed;
            Qwen3-VL: all but the last feed deepstack features).
        vocab_size: target size of the learned BPE vocabulary.
        min_pixels: smallest image area the image processor resizes to (default: the family's 2x2 tokens).
        max_pixels: largest image area (default: the family's 4x4 tokens, so a 112-px image is 16 image tokens).
        vocab_rows: embedding and LM-head rows (default: the tokenizer's, rounded up to 64); more rows than
            tokens give the LM head a real model's share of the compute (the extra ids decode to nothing).
        text_overrides, vision_overrides: ``text_config`` / ``vision_config`` entries replacing the tiny
            choices (:func:`crowdvlm.modeling.proportional.text_overrides`); ``mrope_section`` goes into
            ``rope_parameters``.

    Returns:
        ``out_dir`` as a ``Path``.
    """
    import torch
    from transformers import AutoModelForImageTextToText, GenerationConfig

    from crowdvlm.modeling.tiny_families import (
        FAMILY_NAMES,
        TinySizes,
        default_pixel_bounds,
        tiny_config,
        tiny_processor,
    )

    if hidden_size % 8:
        raise ValueError(f"hidden_size must be a multiple of 8 (4 heads, even head_dim); got {hidden_size}")
    default_min, default_max = default_pixel_bounds(family)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    tokenizer = train_tiny_tokenizer(vocab_size)
    tokenizer.chat_template = CHAT_TEMPLATES[family]
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    padded_vocab = -(-len(tokenizer) // 64) * 64  # embedding rows, a multiple of 64 as in real Qwen
    if vocab_rows is not None and vocab_rows < len(tokenizer):
        raise ValueError(f"vocab_rows {vocab_rows} is smaller than the tokenizer's {len(tokenizer)} tokens")
    sizes = TinySizes(
        hidden_size,
        num_layers,
        vision_hidden_size,
        vision_depth,
        padded_vocab if vocab_rows is None else vocab_rows,
        text_overrides or {},
        vision_overrides or {},
    )
    config = tiny_config(family, sizes, ids)

    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config)
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
    )
    processor = tiny_processor(
        family,
        tokenizer,
        CHAT_TEMPLATES[family],
        default_min if min_pixels is None else min_pixels,
        default_max if max_pixels is None else max_pixels,
    )

    model.save_pretrained(out)
    processor.save_pretrained(out)
    n_params = sum(p.numel() for p in model.parameters())
    logger.info(
        "tiny %s: %d parameters, %d tokens -> %s", FAMILY_NAMES[family], n_params, len(tokenizer), out
    )
    return out
