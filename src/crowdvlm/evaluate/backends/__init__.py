"""Inference backends: Hugging Face ``generate`` (:mod:`.hf_backend`), vLLM (:mod:`.vllm_backend`) and any
OpenAI-compatible API (:mod:`.openai_backend`). Each is imported only when used."""
