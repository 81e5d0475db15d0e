"""TLS contexts shared by every client in the process.

Building an ``ssl.SSLContext`` loads a CA bundle: about 1 MB and 100 ms of CPU each. One
per client (or per reconnect) is what made hundreds of clients in one process heavy and slow
to start; a context is safe to share between connections, threads and loops.
"""

from __future__ import annotations

import functools
import ssl

import httpx

__all__ = ["http_ssl_context", "ws_ssl_context"]


@functools.cache
def http_ssl_context() -> ssl.SSLContext:
    """What ``httpx.AsyncClient(trust_env=False)`` would build (certifi's CAs), built once
    per process."""
    return httpx.create_ssl_context(trust_env=False)


@functools.cache
def ws_ssl_context() -> ssl.SSLContext:
    """What ``websockets`` would build for a ``wss://`` URL (the system's CAs), built once."""
    return ssl.create_default_context()
