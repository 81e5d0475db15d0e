"""Optional parts and the extras that install them, with an error that names the extra.

Without the ``server`` extra, importing :mod:`langchain_moltcities.server` (or running
``moltcities demo``/``serve``) would end in a bare ``ModuleNotFoundError`` for Starlette deep in
a traceback; :func:`require_extra` says instead which extra to install.
"""

from __future__ import annotations

import importlib.util

__all__ = ["EXTRAS", "MissingExtraError", "require_extra"]

EXTRAS: dict[str, tuple[str, ...]] = {
    "server": ("starlette", "uvicorn"),
    "agents": ("langchain",),
}
"""Each extra and the top-level modules it provides."""


class MissingExtraError(ModuleNotFoundError):
    """A feature needs an extra that is not installed; the message says how to install it.

    A ``ModuleNotFoundError``, so code catching ``ImportError`` keeps working.
    """


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require_extra(extra: str, feature: str) -> None:
    """Raise :class:`MissingExtraError` if a module of ``extra`` is missing for ``feature``."""
    missing = [m for m in EXTRAS[extra] if not _installed(m)]
    if missing:
        raise MissingExtraError(
            f"{feature} needs the '{extra}' extra ({', '.join(missing)} not installed). "
            f"Install it with: pip install 'langchain-moltcities[{extra}]'",
            name=missing[0],
        )
