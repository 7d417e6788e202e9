"""A tiny random-weight Qwen2.5-VL, built offline, for tests, the tiny recipes and the demo.

The model has the real Qwen2.5-VL architecture (vision tower with windowed attention, patch merger,
M-RoPE text decoder) at toy sizes, so every code path that runs on Qwen2.5-VL-3B/7B runs here, in
well under a second per training step on a CPU. Its tokenizer is a byte-level BPE trained locally on
the vocabulary this project's prompts and answers use, with Qwen's pre-tokenizer (so every digit is its
own token, as in real Qwen), Qwen's special tokens appended after the learned vocabulary and the
Qwen2-VL/2.5-VL chat template. Nothing is downloaded; the result is deterministic given ``seed``.
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

# Words the tokenizer should hold as whole tokens: the paper's prompts, the questions of the counting
# datasets, the short templated reasoning the SFT targets use and the chat template's own text. BPE merges
# are learned from these; anything else still encodes, byte by byte.
_OBJECTS = (
    "people", "persons", "pedestrians", "heads", "sheep", "cows", "animals", "vehicles", "cars", "wheat heads",
    "plants", "leaves", "manatees", "fish", "birds", "dots", "objects", "trees", "boats", "crowd",
)  # fmt: skip
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
    seed: int = 0,
    hidden_size: int = 64,
    num_layers: int = 2,
    vision_hidden_size: int = 64,
    vision_depth: int = 2,
    vocab_size: int = 512,
    min_pixels: int = 56 * 56,
    max_pixels: int = 112 * 112,
) -> Path:
    """Build a tiny random-weight Qwen2.5-VL and save it in Hugging Face format.

    The folder holds ``config.json``, ``generation_config.json``, ``model.safetensors``, the tokenizer
    (``tokenizer.json``, ``tokenizer_config.json``, ``chat_template.jinja``) and ``processor_config.json``
    (image and video processors), so ``AutoModelForImageTextToText.from_pretrained(out_dir)`` and
    ``AutoProcessor.from_pretrained(out_dir)`` load it offline.

    Args:
        out_dir: folder to write (created if missing).
        seed: seeds the weight initialisation; the same seed gives byte-identical weights.
        hidden_size: text decoder width (4 attention heads, so a multiple of 8 that keeps head_dim even).
        num_layers: text decoder layers.
        vision_hidden_size: vision tower width.
        vision_depth: vision tower blocks (the last one uses full attention, the others windowed).
        vocab_size: target size of the learned BPE vocabulary.
        min_pixels: smallest image area the image processor resizes to.
        max_pixels: largest image area the image processor resizes to (112*112 gives 16 image tokens).

    Returns:
        ``out_dir`` as a ``Path``.
    """
    import torch
    from transformers import (
        GenerationConfig,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    if hidden_size % 8:
        raise ValueError(f"hidden_size must be a multiple of 8 (4 heads, even head_dim); got {hidden_size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    tokenizer = train_tiny_tokenizer(vocab_size)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    padded_vocab = -(-len(tokenizer) // 64) * 64  # embedding rows, a multiple of 64 as in real Qwen

    num_heads = 4
    half_head_dim = hidden_size // num_heads // 2
    # M-RoPE splits head_dim/2 rotary frequencies over (temporal, height, width), Qwen's 1:1.5:1.5 ratio.
    mrope_t = half_head_dim // 4
    mrope_h = (half_head_dim - mrope_t) // 2
    mrope_section = [mrope_t, mrope_h, half_head_dim - mrope_t - mrope_h]

    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=padded_vocab,
            hidden_size=hidden_size,
            intermediate_size=2 * hidden_size,
            num_hidden_layers=num_layers,
            num_attention_heads=num_heads,
            num_key_value_heads=num_heads // 2,
            max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": mrope_section},
            bos_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
        ),
        vision_config=dict(
            depth=vision_depth,
            hidden_size=vision_hidden_size,
            intermediate_size=2 * vision_hidden_size,
            num_heads=4,
            out_hidden_size=hidden_size,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=56,
            fullatt_block_indexes=[vision_depth - 1],
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )

    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
    )

    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(
            min_pixels=min_pixels, max_pixels=max_pixels, patch_size=14, merge_size=2, temporal_patch_size=2
        ),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=QWEN2_VL_CHAT_TEMPLATE,
    )

    model.save_pretrained(out)
    processor.save_pretrained(out)
    n_params = sum(p.numel() for p in model.parameters())
    logger.info("tiny Qwen2.5-VL: %d parameters, %d tokens -> %s", n_params, len(tokenizer), out)
    return out
