"""Offline batched inference with vLLM (``--backend vllm``), for large evaluations.

On a GPU, ``pip install 'crowdvlm[vllm]'``; on CPU machines ``make setup-vllm`` builds an environment with
vLLM's CPU build, where CI checks that its greedy answers are the Hugging Face backend's
(tests/evaluate/test_vllm_backend.py). It reuses everything else — items, prompts (through the model's own
chat template), ``predictions.jsonl``, resume, metrics — so only :meth:`VLLMBackend.generate` is
vLLM-specific. Each batch is one ``LLM.generate`` call: give it large batches (``--batch-size 256``), vLLM
schedules within a batch. ``num_samples`` > 1 samples that many answers per image in the same call (vLLM
shares the prompt's prefix and image features between them): the first is the answer, all of them are in
``Answer.extra["samples"]``.

A script that builds this backend needs an ``if __name__ == "__main__":`` guard: vLLM spawns its engine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crowdvlm.evaluate.backends.base import Answer, EvalItem, Prepared, try_load_image
from crowdvlm.prompts import conversational_prompt
from crowdvlm.resize import check_pixel_bounds

__all__ = ["VLLMBackend"]


class VLLMBackend:
    """Greedy decoding with ``vllm.LLM``.

    Args:
        model: model folder or Hub id.
        max_new_tokens: generation budget per answer.
        dtype: ``auto``, ``bfloat16``, ...
        min_pixels: smallest image area after resizing (passed to the Qwen-VL processor).
        max_pixels: largest image area after resizing.
        tensor_parallel_size: GPUs per model.
        gpu_memory_utilization: fraction of GPU memory vLLM may take.
        num_samples: answers per image; above 1 they are sampled at ``temperature``.
        temperature: sampling temperature when ``num_samples`` > 1 (greedy otherwise).
        seed: the engine's sampling seed.

    Raises:
        ImportError: vLLM is not installed.
        ValueError: ``num_samples`` is below 1.
    """

    name = "vllm"

    def __init__(
        self,
        model: str | Path,
        *,
        max_new_tokens: int = 256,
        dtype: str = "auto",
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        num_samples: int = 1,
        temperature: float = 1.0,
        seed: int = 0,
    ):
        if num_samples < 1:
            raise ValueError(f"num_samples must be at least 1, got {num_samples}")
        try:
            import vllm
        except ImportError as err:
            raise ImportError(
                "--backend vllm needs vLLM, which is not installed here: `pip install 'crowdvlm[vllm]'` on a CUDA "
                "machine, `make setup-vllm` for vLLM's CPU build, or use --backend hf"
            ) from err
        from transformers import AutoProcessor

        self.model_name = str(model)
        self.max_new_tokens = max_new_tokens
        self.num_samples = num_samples
        self.processor = AutoProcessor.from_pretrained(model)  # only for its chat template
        check_pixel_bounds(min_pixels, max_pixels)  # the rule the HF processor applies, before vLLM starts
        pixels = {k: v for k, v in (("min_pixels", min_pixels), ("max_pixels", max_pixels)) if v is not None}
        self.llm = vllm.LLM(
            model=str(model),
            dtype=dtype,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            limit_mm_per_prompt={"image": 1, "video": 0},  # images only: no video profiling at start
            mm_processor_kwargs=pixels or None,
            seed=seed,
        )
        self.sampling = vllm.SamplingParams(
            n=num_samples,
            temperature=temperature if num_samples > 1 else 0.0,
            max_tokens=max_new_tokens,
        )

    def describe(self) -> dict[str, Any]:
        described = {"backend": self.name, "model": self.model_name, "max_new_tokens": self.max_new_tokens}
        if self.num_samples > 1:
            described |= {"num_samples": self.num_samples, "temperature": self.sampling.temperature}
        return described

    def prepare(self, items: list[EvalItem]) -> Prepared:
        requests, errors = [], []
        for item in items:
            image, error = try_load_image(item.image)
            errors.append(error)
            if image is not None:
                text = self.processor.apply_chat_template(
                    conversational_prompt(item.prompt), tokenize=False, add_generation_prompt=True
                )
                requests.append({"prompt": text, "multi_modal_data": {"image": image}})
        return Prepared(items=items, errors=errors, payload=requests)

    def generate(self, prepared: Prepared) -> list[Answer]:
        outputs = self.llm.generate(prepared.payload, self.sampling, use_tqdm=False)
        if self.num_samples == 1:
            return [Answer(text=out.outputs[0].text) for out in outputs]
        return [
            Answer(text=out.outputs[0].text, extra={"samples": [sample.text for sample in out.outputs]})
            for out in outputs
        ]
