"""Batched greedy inference with Hugging Face ``generate``.

Prompts are built with the processor's chat template (one user turn: image, then text) and padded on the
**left**, so every row's answer starts at the same column: the new tokens are ``sequences[:, prompt_len:]``.
:meth:`HFBackend.prepare` (image decoding, resizing, patching, tokenising) runs in the prefetch thread while
the previous batch generates.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from crowdvlm.errors import UsageError
from crowdvlm.evaluate.backends.base import Answer, EvalItem, Prepared, try_load_image
from crowdvlm.prompts import conversational_prompt

__all__ = ["HFBackend", "resolve_device"]


def resolve_device(device: str = "auto") -> str:
    """``"auto"`` → ``"cuda"`` when a GPU is visible, else ``"cpu"``; anything else is checked and returned.

    Raises:
        UsageError: ``device`` is not a device name torch knows, or names a GPU this machine does not have
            (found before any model is loaded).
    """
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError) as err:
        raise UsageError(f"--device {device!r} is not a device (expected cpu, cuda, cuda:N or auto)") from err
    if parsed.type == "cuda":
        available = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if available == 0:
            raise UsageError(f"--device {device}: no CUDA GPU is available on this machine; use --device cpu")
        if parsed.index is not None and parsed.index >= available:
            raise UsageError(f"--device {device}: this machine has {available} CUDA GPU(s) (cuda:0..)")
    return device


class HFBackend:
    """Greedy decoding with a loaded ``transformers`` image-text-to-text model.

    Args:
        model: the model (any ``AutoModelForImageTextToText``, PEFT-wrapped or not).
        processor: its processor (chat template, image processor, tokenizer).
        max_new_tokens: generation budget per answer.
        model_name: how the model is named in ``run.json`` and reports.
    """

    name = "hf"

    def __init__(self, model, processor, *, max_new_tokens: int = 256, model_name: str | None = None):
        self.model = model.eval()
        self.processor = processor
        self.max_new_tokens = max_new_tokens
        self.model_name = model_name or getattr(model.config, "_name_or_path", type(model).__name__)
        tokenizer = processor.tokenizer
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        # The prefetch thread tokenises with `tokenizer` while this thread decodes: a fast tokenizer must not
        # be used from two threads at once ("Already borrowed"), so decoding gets its own copy.
        self._decoder = copy.deepcopy(tokenizer)
        self.generation_config = copy.deepcopy(model.generation_config)
        self.generation_config.update(
            do_sample=False, temperature=None, top_p=None, top_k=None, max_new_tokens=max_new_tokens
        )
        if self.generation_config.pad_token_id is None:
            self.generation_config.pad_token_id = tokenizer.pad_token_id

    @classmethod
    def load(
        cls,
        name_or_path: str | Path,
        *,
        max_new_tokens: int = 256,
        device: str = "auto",
        dtype: str = "auto",
        attn_implementation: str | None = None,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
    ) -> HFBackend:
        """Load a model folder or Hub id (see :func:`crowdvlm.modeling.load_model_and_processor`)."""
        from crowdvlm.modeling import load_model_and_processor

        device = resolve_device(device)  # a GPU that is not there fails before the model loads
        model, processor = load_model_and_processor(
            name_or_path,
            dtype=dtype,
            attn_implementation=attn_implementation,
            min_pixels=min_pixels,
            max_pixels=max_pixels,
        )
        model.to(device)
        return cls(model, processor, max_new_tokens=max_new_tokens, model_name=str(name_or_path))

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "model": self.model_name,
            "max_new_tokens": self.max_new_tokens,
            "device": str(self.model.device),
            "dtype": str(self.model.dtype).removeprefix("torch."),
        }

    def _encode(self, texts: list[str], images: list) -> Any:
        return self.processor(text=texts, images=images, padding=True, return_tensors="pt")

    def prepare(self, items: list[EvalItem]) -> Prepared:
        loaded: list[tuple[int, str, Any]] = []  # (item index, chat text, image)
        errors: list[str | None] = []
        for index, item in enumerate(items):
            image, error = try_load_image(item.image)
            errors.append(error)
            if image is not None:
                text = self.processor.apply_chat_template(
                    conversational_prompt(item.prompt), tokenize=False, add_generation_prompt=True
                )
                loaded.append((index, text, image))
        if not loaded:
            return Prepared(items=items, errors=errors)
        try:
            payload = self._encode([t for _, t, _ in loaded], [im for _, _, im in loaded])
        except (ValueError, RuntimeError):
            # One image the processor rejects (e.g. an aspect ratio over 200) must not sink the batch:
            # find it by encoding each image alone, record it, and encode the others together.
            usable = []
            for index, text, image in loaded:
                try:
                    self._encode([text], [image])
                    usable.append((index, text, image))
                except (ValueError, RuntimeError) as err:
                    errors[index] = (
                        f"cannot preprocess image {items[index].image}: {type(err).__name__}: {err}"
                    )
            payload = self._encode([t for _, t, _ in usable], [im for _, _, im in usable]) if usable else None
        return Prepared(items=items, errors=errors, payload=payload)

    def generate(self, prepared: Prepared) -> list[Answer]:
        import torch

        inputs = prepared.payload.to(self.model.device)
        with torch.inference_mode():
            sequences = self.model.generate(**inputs, generation_config=self.generation_config)
        new_tokens = sequences[:, inputs["input_ids"].shape[1] :]  # (B, new): left padding aligns the prompts
        texts = self._decoder.batch_decode(new_tokens, skip_special_tokens=True)
        return [Answer(text=text) for text in texts]
