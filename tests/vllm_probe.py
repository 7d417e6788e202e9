"""Greedy completions and their log-probs from vLLM, for the tests marked ``vllm``.

Run as a script it starts a fresh vLLM and writes JSON; vLLM spawns its engine process, hence the ``__main__``
guard:

    python tests/vllm_probe.py MODEL_DIR IMAGE OUT.json            # greedy answer + log-probs, as TRL's engine
    python tests/vllm_probe.py samples MODEL_DIR MANIFEST OUT.json  # VLLMBackend, 4 answers per image
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

QUESTION = "How many dots are in the image?"
MAX_TOKENS = 8


def vllm_request(model_dir: str | Path, image) -> dict:
    """One vLLM request: the model's chat template around an image and :data:`QUESTION`."""
    from transformers import AutoProcessor

    from crowdvlm.prompts import conversational_prompt

    processor = AutoProcessor.from_pretrained(model_dir)
    text = processor.apply_chat_template(
        conversational_prompt(QUESTION), tokenize=False, add_generation_prompt=True
    )
    return {"prompt": text, "multi_modal_data": {"image": image}}


def greedy(llm, request: dict) -> dict:
    """``{"token_ids": [...], "logprobs": [...]}``: the greedy completion and each token's log-prob."""
    from vllm import SamplingParams

    params = SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS, logprobs=0)
    out = llm.generate([request], params, use_tqdm=False)[0].outputs[0]
    ids = list(out.token_ids)
    return {
        "token_ids": ids,
        "logprobs": [step[t].logprob for t, step in zip(ids, out.logprobs, strict=True)],
    }


def max_logprob_gap(a: dict, b: dict) -> float:
    """Largest |log-prob difference| of two greedy results; infinite where their tokens differ."""
    if a["token_ids"] != b["token_ids"]:
        return float("inf")
    return max(abs(x - y) for x, y in zip(a["logprobs"], b["logprobs"], strict=True))


def sample_answers(model_dir: str, manifest: str, out: str) -> None:
    """Each image of ``manifest`` through ``VLLMBackend(num_samples=4)``: ``[{"text", "samples"}, ...]``."""
    from crowdvlm.evaluate.backends.vllm_backend import VLLMBackend
    from crowdvlm.evaluate.run import items_from_manifests

    backend = VLLMBackend(model_dir, max_new_tokens=16, dtype="float32", num_samples=4, temperature=1.0)
    items = items_from_manifests([manifest])
    answers = backend.generate(backend.prepare(items))
    result = [{"text": answer.text, "samples": answer.extra["samples"]} for answer in answers]
    Path(out).write_text(json.dumps(result))


def main(model_dir: str, image_path: str, out: str) -> None:
    from PIL import Image
    from vllm import LLM

    # As TRL 1.16 builds its colocated engine (bf16 on CPU: vLLM's choice there), on its own.
    llm = LLM(
        model=model_dir,
        dtype="bfloat16",
        max_num_batched_tokens=4096,
        logprobs_mode="processed_logprobs",
        limit_mm_per_prompt={"image": 1, "video": 0},  # no video profiling at start (same image results)
        seed=0,
    )
    image = Image.open(image_path).convert("RGB")
    Path(out).write_text(json.dumps(greedy(llm, vllm_request(model_dir, image))))


if __name__ == "__main__":
    if sys.argv[1] == "samples":
        sample_answers(*sys.argv[2:5])
    else:
        main(*sys.argv[1:4])
