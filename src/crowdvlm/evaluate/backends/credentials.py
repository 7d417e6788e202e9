"""Keeping an endpoint's credentials out of files, logs and messages, by construction where possible.

Three rules, used by :mod:`.openai_backend` and the eval CLI:

1. **Our own text never holds a secret.** The API key goes to the HTTP client and nowhere else; URLs are
   shown as :attr:`Endpoint.public_url`, rebuilt from the scheme, host, port, path and the *names* of the
   query parameters only (``user:password@`` dropped, every query value shown as ``***``). Messages are
   built from status codes and our own words, never from ``str()`` of a transport exception.
2. **Text the server sent** (its error message, the model's answer) may echo a secret back. It goes through
   :meth:`Endpoint.scrub`, which replaces each secret of at least :data:`MIN_SCRUBBED` characters (and its
   percent-encoded form) by ``***``. A shorter secret cannot be told apart from ordinary text, so it is
   never searched for (a one-letter key must not mangle every message); instead an error message leaves the
   server's text out altogether (:meth:`Endpoint.server_text`).
3. **The HTTP stack's own log records** (httpx, httpcore, openai) carry URLs and, at debug level, request
   and response headers. :class:`HTTPStackFilter` drops them at the handler, with ``-v`` too; the backend
   logs every retry and failure itself.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit, urlunsplit

__all__ = ["HTTP_STACK_LOGGERS", "MIN_SCRUBBED", "Endpoint", "HTTPStackFilter", "install_http_log_filter"]

#: Secrets shorter than this are never searched for in text (see rule 2 above).
MIN_SCRUBBED = 8
#: Loggers of the HTTP stack under the openai client (both the classic and the ``2`` package names).
HTTP_STACK_LOGGERS = ("httpx", "httpx2", "httpcore", "httpcore2", "openai")
_SERVER_TEXT_LIMIT = 300


@dataclass(frozen=True)
class Endpoint:
    """An endpoint URL split into what the client needs and what may be shown.

    Attributes:
        client_url: the URL the client connects to (userinfo kept, query removed: see ``query``).
        query: the URL's query parameters, sent with every request.
        public_url: the URL as it may be written or printed (see the module's rule 1).
        secrets: the API key, the URL's password, user name (also as the HTTP basic-auth token they make)
            and query values.
    """

    client_url: str | None
    query: dict[str, str] = field(default_factory=dict)
    public_url: str | None = None
    secrets: tuple[str, ...] = ()

    @classmethod
    def parse(cls, url: str | None, api_key: str | None) -> Endpoint:
        """Split ``url``; ``api_key`` joins the secrets.

        >>> e = Endpoint.parse("https://bob:hunter22@api.example/v1?token=abc123xyz&x=1", "sk-key")
        >>> e.public_url, e.client_url, e.query
        ('https://api.example/v1?token=***&x=***', 'https://bob:hunter22@api.example/v1', {'token': 'abc123xyz', 'x': '1'})

        Raises:
            ValueError: not an http(s) URL with a host; the message never repeats the URL (it may hold
                credentials).
        """
        secrets = [api_key] if api_key else []
        if not url:
            return cls(client_url=url, public_url=url, secrets=tuple(secrets))
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - parsed lazily: an out-of-range port raises here
        except ValueError:  # its message can quote a part of the URL: a password misread as a port
            raise ValueError("--base-url is not a valid URL: check its host and port") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                "--base-url must be an http:// or https:// URL with a host, e.g. http://localhost:8000/v1"
            )
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        secrets += [s for s in (parts.username, parts.password, *query.values()) if s]
        if parts.username is not None:  # the client sends them as HTTP basic auth: a server may echo that
            basic = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            secrets.append(base64.b64encode(basic.encode()).decode("ascii"))
        host = parts.hostname or ""
        if ":" in host:  # an IPv6 literal regains its brackets
            host = f"[{host}]"
        netloc = f"{host}:{parts.port}" if parts.port is not None else host
        shown_query = "&".join(f"{quote(name)}=***" for name in query)
        return cls(
            client_url=urlunsplit(parts._replace(query="", fragment="")),
            query=query,
            public_url=urlunsplit((parts.scheme, netloc, parts.path, shown_query, "")),
            secrets=tuple(dict.fromkeys(secrets)),
        )

    @property
    def has_short_secret(self) -> bool:
        """Whether a secret is too short to be searched for in text."""
        return any(len(s) < MIN_SCRUBBED for s in self.secrets)

    def scrub(self, text: str) -> str:
        """``text`` from the server with every long fragment of a secret replaced by ***, whatever its case.

        A fragment is any case-insensitive substring of a secret (raw or percent-encoded) of at least
        ``max(MIN_SCRUBBED, len(secret) // 2)`` characters: a server that echoes the key lowercased,
        uppercased or cut short by a character is scrubbed as well as one that echoes it whole.

        >>> Endpoint.parse("http://h/v1", "sk-0123456789abcdef").scrub("key SK-0123456789ABCDE rejected")
        'key *** rejected'
        """
        forms = {
            form
            for secret in self.secrets
            if len(secret) >= MIN_SCRUBBED
            for form in (secret, quote(secret, safe=""), quote_plus(secret))
        }
        return _mask_fragments(text, forms)

    def server_text(self, text: object) -> str | None:
        """A server's message, fit for an error message: scrubbed and cut short, or None when not safe."""
        if not isinstance(text, str) or not text.strip() or self.has_short_secret:
            return None
        text = " ".join(self.scrub(text).split())
        return text if len(text) <= _SERVER_TEXT_LIMIT else text[:_SERVER_TEXT_LIMIT] + " …"


def _lower_keeping_length(text: str) -> str:
    """``text`` lowercased character by character, so that positions still line up with ``text``."""
    return "".join(low if len(low := char.lower()) == 1 else char for char in text)


def _mask_fragments(text: str, secrets: set[str]) -> str:
    """``text`` with every run of characters covered by a long fragment of one of ``secrets`` made ``***``.

    Every match of a fragment of length >= ``size`` is a union of matches of the secret's windows of exactly
    ``size`` characters, so marking where those windows occur marks every long fragment.
    """
    if not secrets or not text:
        return text
    low = _lower_keeping_length(text)
    covered = bytearray(len(text))
    for secret in secrets:
        size = max(MIN_SCRUBBED, len(secret) // 2)
        secret_low = _lower_keeping_length(secret)
        for window in {secret_low[i : i + size] for i in range(len(secret_low) - size + 1)}:
            start = low.find(window)
            while start != -1:
                covered[start : start + size] = b"\x01" * size
                start = low.find(window, start + 1)
    if not any(covered):
        return text
    pieces, i = [], 0
    while i < len(text):
        if covered[i]:
            while i < len(text) and covered[i]:
                i += 1
            pieces.append("***")
        else:
            j = covered.find(1, i)
            j = len(text) if j == -1 else j
            pieces.append(text[i:j])
            i = j
    return "".join(pieces)


class HTTPStackFilter(logging.Filter):
    """Drops every log record of the HTTP stack (:data:`HTTP_STACK_LOGGERS`): they carry URLs and headers."""

    def filter(self, record: logging.LogRecord) -> bool:
        root = record.name.split(".", 1)[0]
        return root not in HTTP_STACK_LOGGERS


def install_http_log_filter() -> None:
    """Put one :class:`HTTPStackFilter` on every handler of the root logger and of the HTTP-stack loggers.

    Called by the eval CLI's logging setup and again by the openai backend once the client is imported
    (``OPENAI_LOG=debug`` makes the client configure logging of its own at import time).
    """
    for logger in (logging.getLogger(), *map(logging.getLogger, HTTP_STACK_LOGGERS)):
        for handler in logger.handlers:
            if not any(isinstance(f, HTTPStackFilter) for f in handler.filters):
                handler.addFilter(HTTPStackFilter())
    for name in HTTP_STACK_LOGGERS:
        # and do not even build the records: some format headers eagerly
        logging.getLogger(name).setLevel(logging.WARNING)
