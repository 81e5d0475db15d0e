"""Keeping the API key out of log records and error messages.

``websockets`` logs the request line (with ``?token=...``) at DEBUG and puts the URI in some
exception messages, so everything that might carry the URL goes through :func:`redact`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, MutableMapping
from typing import Any

__all__ = ["REDACTED", "RedactingLogger", "redact"]

REDACTED = "***"
# Any MoltCities-looking key or token/key/api_key query value, even one we were not told about.
_PATTERNS = (
    re.compile(r"mc_[A-Za-z0-9]{8,}"),
    re.compile(r"(?i)((?:token|api_key|key)=)[^&\s'\"]+"),
    re.compile(r"(?i)(bearer\s+)[^\s'\"]+"),
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every given secret, and anything shaped like a key, replaced."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    text = _PATTERNS[0].sub(REDACTED, text)
    text = _PATTERNS[1].sub(lambda m: m.group(1) + REDACTED, text)
    return _PATTERNS[2].sub(lambda m: m.group(1) + REDACTED, text)


class RedactingLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger adapter that formats each message itself and redacts it before it is emitted.

    Handed to ``websockets`` as its ``logger=`` so its DEBUG request lines carry no key.
    """

    def __init__(self, logger: logging.Logger, secrets: Iterable[str] = ()) -> None:
        super().__init__(logger, {})
        self._secrets = tuple(s for s in secrets if s)

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        """Pass records through; redaction happens in :meth:`log`."""
        return msg, kwargs

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        """Log with every secret redacted from the message and arguments."""
        if not self.isEnabledFor(level):
            return
        try:
            text = str(msg) % args if args else str(msg)
        except (TypeError, ValueError):
            text = " ".join([str(msg), *map(str, args)])
        exc_info = kwargs.pop("exc_info", None)
        if exc_info:
            # A traceback could quote the URI; keep only the redacted exception summary.
            exc = exc_info if isinstance(exc_info, BaseException) else None
            if exc is None and isinstance(exc_info, tuple):
                exc = exc_info[1]
            if exc is not None:
                text = f"{text} ({type(exc).__name__}: {exc})"
        kwargs.pop("stack_info", None)
        kwargs.setdefault("stacklevel", 2)
        self.logger.log(level, redact(text, self._secrets), **kwargs)
