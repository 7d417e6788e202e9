"""API models as baselines: any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM serve, ...).

Images travel as base64 data URLs. Requests run concurrently (at most ``concurrency`` at a time) on an
asyncio loop of the backend's own thread, so that a deadline or Ctrl-C can cancel a request in the middle
of a read. Per image:

* an attempt that has not received the whole response ``timeout`` seconds after it started is cut
  (a server that trickles bytes is cut too: the deadline is total, not per read);
* 429, 408, a 5xx, a timeout, a dropped connection, and a 200 whose JSON is not a chat completion with
  text (no choices, null content, wrong types) are retried with exponential backoff;
* a 200 whose body is not JSON at all (an HTML login page behind a wrong ``--base-url``) and other 4xx are
  not retried;
* what still fails becomes that image's recorded error, never a crash and never a scored empty answer.

So one image takes at most ``(max_retries + 1) * timeout`` plus the backoff delays, each at most
``1.25 * backoff_max``. A ``KeyboardInterrupt`` while :meth:`OpenAIBackend.generate` waits cancels every
request in flight and every pending retry at once. Credentials: see :mod:`.credentials`.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import io
import json
import logging
import os
import random
import threading
from pathlib import Path
from typing import Any

from PIL import Image

from crowdvlm.data.images import exif_orientation, open_image, regular_file
from crowdvlm.evaluate.backends.base import Answer, EvalItem, Prepared
from crowdvlm.evaluate.backends.credentials import Endpoint, install_http_log_filter
from crowdvlm.prompts import conversational_prompt

__all__ = ["OpenAIBackend", "image_data_url"]

logger = logging.getLogger(__name__)

# Formats every OpenAI-compatible vision endpoint accepts as-is; anything else is re-encoded as PNG.
_PASSTHROUGH = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif"}


def image_data_url(path: str | Path) -> str:
    """Read an image and return it as a ``data:`` URL, after checking that it decodes.

    Raises:
        OSError: the file is missing, not a regular file, unreadable or not a (complete) image.
    """
    raw = regular_file(path).read_bytes()  # a named pipe would block the read forever
    with Image.open(io.BytesIO(raw)) as img:
        img.load()  # a truncated or corrupt file fails here rather than on the server
        # Sent as-is only when already upright: a server may or may not apply EXIF orientation itself.
        mime = _PASSTHROUGH.get(img.format or "") if exif_orientation(img) == 1 else None
        if mime is None:
            buffer = io.BytesIO()
            open_image(io.BytesIO(raw)).save(buffer, format="PNG")
            raw, mime = buffer.getvalue(), "image/png"
    return f"data:{mime};base64,{base64.b64encode(raw).decode('ascii')}"


_CLOSE_WAIT_S = 5.0  # how long close() waits for cancelled requests to let go of their connections


class _Retry(Exception):
    """An attempt failed in a way another attempt may fix; ``reason`` is safe to record."""

    def __init__(self, reason: str, retry_after: str | None = None):
        super().__init__(reason)
        self.reason, self.retry_after = reason, retry_after


class _Fail(Exception):
    """An attempt failed in a way retrying cannot fix; ``reason`` is safe to record."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class OpenAIBackend:
    """Counts with a model behind an OpenAI-compatible API.

    Args:
        model: the model name the endpoint serves (e.g. ``gpt-4o``).
        base_url: the endpoint (default: ``OPENAI_BASE_URL``, else OpenAI's). Credentials in it (``user:pw@``,
            query-string tokens) are used for the requests but never written or shown.
        api_key: the key (default: ``OPENAI_API_KEY``; a local endpoint without a key gets a placeholder).
        max_new_tokens: ``max_tokens`` of each request.
        concurrency: at most this many requests in flight.
        timeout: seconds one attempt may take in total, from sending to the last byte of the response.
        max_retries: retries after the first attempt (see the module docstring for what is retried).
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

        install_http_log_filter()  # after the import: the client may have set up logging of its own
        if not timeout > 0:
            raise ValueError(f"the request timeout must be > 0 seconds, got {timeout}")
        self.model = model
        key = api_key or os.environ.get("OPENAI_API_KEY")
        self._endpoint = Endpoint.parse(base_url or os.environ.get("OPENAI_BASE_URL") or None, key)
        if not key:
            if self._endpoint.client_url is None:
                raise ValueError(
                    "the openai backend needs an API key: pass --api-key or set OPENAI_API_KEY "
                    "(or point --base-url at an endpoint that needs none)"
                )
            key = "none"  # local OpenAI-compatible servers usually ignore the key, but the client wants one
        self.base_url = self._endpoint.public_url
        self.max_new_tokens = max_new_tokens
        self.concurrency = max(1, concurrency)
        self.timeout = timeout
        self.max_retries = max(0, max_retries)
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        # The client's own retries are off: ours are counted, logged (without secrets) and parameterised.
        self._client = openai.AsyncOpenAI(
            api_key=key,
            base_url=self._endpoint.client_url,
            default_query=self._endpoint.query or None,
            timeout=timeout,
            max_retries=0,
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="openai-requests", daemon=True)
        self._thread.start()

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "model": self.model,
            "base_url": self.base_url,
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
        """Answer every loaded item; on ``KeyboardInterrupt`` cancel all of the batch's requests first."""
        jobs = list(zip(prepared.loaded, prepared.payload, strict=True))
        future = asyncio.run_coroutine_threadsafe(self._answer_all(jobs), self._loop)
        try:
            return future.result()
        except BaseException:  # Ctrl-C (or any error here): nothing of the batch may go on in the background
            future.cancel()
            raise

    def close(self) -> None:
        """Cancel whatever is still in flight, close the connections and stop the loop (bounded wait)."""
        if self._loop.is_closed():
            return
        if self._loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(_CLOSE_WAIT_S)
            except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError):
                logger.warning(
                    "openai backend: requests still in flight after %.0fs; leaving them", _CLOSE_WAIT_S
                )
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(_CLOSE_WAIT_S)
        if not self._thread.is_alive():
            self._loop.close()

    async def _shutdown(self) -> None:
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._client.close()

    # -- one image, with retries -----------------------------------------------------------------------

    async def _answer_all(self, jobs: list[tuple[EvalItem, str]]) -> list[Answer]:
        slots = asyncio.Semaphore(self.concurrency)
        return list(await asyncio.gather(*(self._complete(item, url, slots) for item, url in jobs)))

    async def _complete(self, item: EvalItem, data_url: str, slots: asyncio.Semaphore) -> Answer:
        messages = conversational_prompt(item.prompt)
        messages[0]["content"][0] = {"type": "image_url", "image_url": {"url": data_url}}
        attempts = self.max_retries + 1
        for attempt in range(attempts):
            try:
                async with slots:  # a slot is held for the attempt only, not for the backoff sleep
                    text = await self._attempt(messages)
                return Answer(text=text, extra={"attempts": attempt + 1})
            except _Fail as failure:
                return Answer(error=f"{failure.reason} (not retried)", extra={"attempts": attempt + 1})
            except _Retry as failure:
                if attempt + 1 == attempts:
                    tries = f"{attempts} attempts" if attempts > 1 else "1 attempt"
                    return Answer(error=f"{failure.reason} (after {tries})", extra={"attempts": attempts})
                delay = self._delay(attempt, failure.retry_after)
                logger.info(
                    "%s: %s; retry %d/%d in %.2fs",
                    item.id,
                    failure.reason,
                    attempt + 1,
                    self.max_retries,
                    delay,
                )
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # the loop always returns

    async def _attempt(self, messages: list[dict]) -> str:
        """One request under the total deadline: the answer's text, or :class:`_Retry` / :class:`_Fail`."""
        import openai

        try:
            async with asyncio.timeout(self.timeout):
                raw = await self._client.chat.completions.with_raw_response.create(
                    model=self.model, messages=messages, temperature=0, max_tokens=self.max_new_tokens
                )
                body = raw.http_response.content
        except TimeoutError:
            raise _Retry("request timed out") from None
        except openai.APITimeoutError:
            raise _Retry("request timed out") from None
        except openai.APIStatusError as err:
            raise self._status_failure(err) from None
        except openai.APIConnectionError as err:
            # never str(err) or its cause: transport messages can hold the URL
            cause = type(err.__cause__).__name__ if err.__cause__ is not None else "no response"
            raise _Retry(f"connection failed ({cause})") from None
        return self._endpoint.scrub(_answer_text(body, raw.http_response.headers.get("content-type")))

    def _status_failure(self, err: Any) -> _Retry | _Fail:
        data = err.body
        message = data.get("message") if isinstance(data, dict) else data
        shown = self._endpoint.server_text(message)
        reason = f"HTTP {err.status_code}" + (f": {shown}" if shown else "")
        if err.status_code in (408, 429) or err.status_code >= 500:
            return _Retry(reason, err.response.headers.get("retry-after"))
        return _Fail(reason)

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        delay = self.backoff_base * 2**attempt
        if retry_after:
            try:
                delay = max(delay, float(retry_after))
            except ValueError:
                pass  # an HTTP date: keep our own schedule
        # a little jitter so that concurrent requests that failed together do not retry together
        return min(self.backoff_max, delay) * (1 + 0.25 * random.random())


def _answer_text(body: bytes, content_type: str | None) -> str:
    """The answer in a 200 response's body, or :class:`_Fail` / :class:`_Retry` saying what is wrong with it.

    >>> _answer_text(b'{"choices": [{"message": {"content": "<answer>3</answer>"}}]}', "application/json")
    '<answer>3</answer>'
    """
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        kind = (content_type or "no content type").split(";")[0]
        raise _Fail(
            f"HTTP 200 but the body is not JSON ({kind}, {len(body)} bytes): "
            "is --base-url an OpenAI-compatible endpoint (usually ending in /v1)?"
        ) from None
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices:
        raise _Retry("HTTP 200 but the response has no choices")
    message = choices[0].get("message") if isinstance(choices[0], dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, list):  # some servers answer in typed parts
        texts = [part.get("text") for part in content if isinstance(part, dict)]
        content = "".join(texts) if texts and all(isinstance(t, str) for t in texts) else content
    if isinstance(content, str):
        return content
    finish = choices[0].get("finish_reason") if isinstance(choices[0], dict) else None
    what = "null content" if content is None else f"content of type {type(content).__name__}"
    raise _Retry(f"HTTP 200 but the answer has {what}, not text (finish_reason {finish!r:.40})")
