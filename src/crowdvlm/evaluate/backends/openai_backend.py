"""API models as baselines: any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM serve, ...).

Images travel as base64 data URLs. Requests run concurrently (at most ``concurrency`` at a time); a request
that fails with 429, a 5xx, a timeout or a dropped connection is retried with exponential backoff; one that
still fails — or fails with an error that retrying cannot fix (400, 401, ...) — becomes that image's
recorded error, and the run goes on. The API key is never logged nor written: error texts are scrubbed.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from PIL import Image

from crowdvlm.data.images import exif_orientation, open_image
from crowdvlm.evaluate.backends.base import Answer, EvalItem, Prepared
from crowdvlm.prompts import conversational_prompt

__all__ = ["OpenAIBackend", "image_data_url"]

logger = logging.getLogger(__name__)

# Formats every OpenAI-compatible vision endpoint accepts as-is; anything else is re-encoded as PNG.
_PASSTHROUGH = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif"}


def image_data_url(path: str | Path) -> str:
    """Read an image and return it as a ``data:`` URL, after checking that it decodes.

    Raises:
        OSError: the file is missing, unreadable or not a (complete) image.
    """
    raw = Path(path).read_bytes()
    with Image.open(io.BytesIO(raw)) as img:
        img.load()  # a truncated or corrupt file fails here rather than on the server
        # Sent as-is only when already upright: a server may or may not apply EXIF orientation itself.
        mime = _PASSTHROUGH.get(img.format or "") if exif_orientation(img) == 1 else None
        if mime is None:
            buffer = io.BytesIO()
            open_image(io.BytesIO(raw)).save(buffer, format="PNG")
            raw, mime = buffer.getvalue(), "image/png"
    return f"data:{mime};base64,{base64.b64encode(raw).decode('ascii')}"


def _without_credentials(url: str | None) -> str | None:
    """``url`` with any ``user:password@`` part removed (for run.json and logs)."""
    if not url:
        return url
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=host))


class OpenAIBackend:
    """Counts with a model behind an OpenAI-compatible API.

    Args:
        model: the model name the endpoint serves (e.g. ``gpt-4o``).
        base_url: the endpoint (default: ``OPENAI_BASE_URL``, else OpenAI's).
        api_key: the key (default: ``OPENAI_API_KEY``; a local endpoint without a key gets a placeholder).
        max_new_tokens: ``max_tokens`` of each request.
        concurrency: at most this many requests in flight.
        timeout: seconds before one request is abandoned (and retried).
        max_retries: retries after the first attempt, for 429 / 5xx / timeout / connection errors.
        backoff_base: first retry delay in seconds; it doubles on each retry.
        backoff_max: cap on one retry delay (also on a server's ``Retry-After``).
    """

    name = "openai"

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        max_new_tokens: int = 256,
        concurrency: int = 8,
        timeout: float = 60.0,
        max_retries: int = 5,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
    ):
        import openai

        self.model = model
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key:
            if self.base_url is None:
                raise ValueError(
                    "the openai backend needs an API key: pass --api-key or set OPENAI_API_KEY "
                    "(or point --base-url at an endpoint that needs none)"
                )
            key = "none"  # local OpenAI-compatible servers usually ignore the key, but the client wants one
        self._secret = key
        self.max_new_tokens = max_new_tokens
        self.concurrency = max(1, concurrency)
        self.timeout = timeout
        self.max_retries = max(0, max_retries)
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        # The client's own retries are off: ours are counted, logged (without the key) and parameterised.
        self._client = openai.OpenAI(api_key=key, base_url=self.base_url, timeout=timeout, max_retries=0)
        self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="openai-request")

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "model": self.model,
            "base_url": _without_credentials(self.base_url),
            "max_new_tokens": self.max_new_tokens,
            "concurrency": self.concurrency,
            "timeout": self.timeout,
            "max_retries": self.max_retries,
        }

    def prepare(self, items: list[EvalItem]) -> Prepared:
        urls, errors = [], []
        for item in items:
            try:
                urls.append(image_data_url(item.image))
                errors.append(None)
            except (OSError, ValueError, Image.DecompressionBombError) as err:
                errors.append(f"cannot load image {item.image}: {type(err).__name__}: {err}")
        return Prepared(items=items, errors=errors, payload=urls)

    def generate(self, prepared: Prepared) -> list[Answer]:
        jobs = zip(prepared.loaded, prepared.payload, strict=True)
        return list(self._pool.map(lambda job: self._complete(job[0], job[1]), jobs))

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._client.close()

    # -- one request, with retries ---------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    def _complete(self, item: EvalItem, data_url: str) -> Answer:
        import openai

        messages = conversational_prompt(item.prompt)
        messages[0]["content"][0] = {"type": "image_url", "image_url": {"url": data_url}}
        attempts = self.max_retries + 1
        for attempt in range(attempts):
            try:
                response = self._client.chat.completions.create(
                    model=self.model,
                    messages=messages,
                    temperature=0,
                    max_tokens=self.max_new_tokens,
                )
                text = response.choices[0].message.content if response.choices else None
                return Answer(text=text or "", extra={"attempts": attempt + 1})
            except (openai.APIStatusError, openai.APIConnectionError) as err:
                reason = self._redact(_describe_error(err))
                if not _retryable(err):
                    return Answer(error=f"{reason} (not retried)", extra={"attempts": attempt + 1})
                if attempt + 1 == attempts:
                    return Answer(error=f"{reason} (after {attempts} attempts)", extra={"attempts": attempts})
                delay = self._delay(attempt, err)
                logger.info(
                    "%s: %s; retry %d/%d in %.2fs", item.id, reason, attempt + 1, self.max_retries, delay
                )
                time.sleep(delay)
            except (
                openai.APIError
            ) as err:  # e.g. a body that is not a chat completion: retrying will not help
                reason = self._redact(f"{type(err).__name__}: {err}")
                return Answer(error=f"{reason} (not retried)", extra={"attempts": attempt + 1})
        raise AssertionError("unreachable")  # the loop always returns

    def _delay(self, attempt: int, err: Exception) -> float:
        delay = self.backoff_base * 2**attempt
        retry_after = getattr(getattr(err, "response", None), "headers", {}).get("retry-after")
        if retry_after:
            try:
                delay = max(delay, float(retry_after))
            except ValueError:
                pass  # an HTTP date: keep our own schedule
        # a little jitter so that concurrent requests that failed together do not retry together
        return min(self.backoff_max, delay) * (1 + 0.25 * random.random())


def _retryable(err: Exception) -> bool:
    import openai

    if isinstance(err, openai.APIStatusError):
        return err.status_code == 429 or err.status_code >= 500
    return isinstance(err, openai.APIConnectionError)  # includes APITimeoutError


def _describe_error(err: Exception) -> str:
    import openai

    if isinstance(err, openai.APITimeoutError):
        return "request timed out"
    if isinstance(err, openai.APIStatusError):
        return f"HTTP {err.status_code}: {err.message}"
    return f"{type(err).__name__}: {err}"
