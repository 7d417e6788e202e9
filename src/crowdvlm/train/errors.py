"""The one error type of training configuration, kept apart so that every ``train`` module can import it."""

from __future__ import annotations

from crowdvlm.errors import UsageError


class ConfigError(UsageError):
    """A training configuration that cannot run; the message says which key to change and how (exit 2)."""
