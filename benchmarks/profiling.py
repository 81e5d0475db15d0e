"""Profile MoltCitiesClient's loop thread with pyinstrument and say where the time goes.

pyinstrument samples only the thread that starts it, and the client's work runs on its own
thread: the flood's first and last frames are mentions, whose async ``on_mention`` callbacks
run on that thread, so they start and stop the profiler around exactly the flood.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from pyinstrument import Profiler
from pyinstrument.frame import Frame
from pyinstrument.session import Session

# The hot path's steps, each a function (file path part, name) and whether its inclusive
# time or only its own counts: what a reader wants to know about where a message's time goes.
# Every one of these functions must run per message (tests/test_benchmarks_smoke.py checks
# it), so the table can't keep a row for a step that moved.
SPANS: tuple[tuple[str, str, str, bool], ...] = (
    (
        "read socket, unframe, hand over (wire.DirectConnection)",
        "langchain_moltcities/wire.py",
        "data_received",
        True,
    ),
    (
        "unframe whole messages (wire.split_messages)",
        "langchain_moltcities/wire.py",
        "split_messages",
        True,
    ),
    (
        "parse_frame (json.loads + pydantic)",
        "langchain_moltcities/protocol.py",
        "parse_frame",
        True,
    ),
    (
        "Channel's per-message step (own time)",
        "langchain_moltcities/connection.py",
        "on_message",
        False,
    ),
    (
        "client._on_frame -> DeliveryBuffer.offer",
        "langchain_moltcities/client.py",
        "_on_frame",
        True,
    ),
    ("DeliveryBuffer.offer (dedupe, bound)", "langchain_moltcities/delivery.py", "offer", True),
)


@dataclass
class Breakdown:
    total_s: float
    spans: list[tuple[str, float]]
    by_package: list[tuple[str, float]]
    top_functions: list[tuple[str, float]]


class LoopThreadProfiler:
    """pyinstrument on the client's loop thread: start and stop must both run there."""

    def __init__(self, interval: float = 0.0005) -> None:
        self.profiler = Profiler(interval=interval, async_mode="disabled")
        self.session: Session | None = None

    def start_here(self) -> None:
        if not self.profiler.is_running:
            self.profiler.start()

    def stop_here(self) -> None:
        if self.profiler.is_running:
            self.session = self.profiler.stop()


def _self_time(frame: Frame) -> float:
    return frame.time - sum(c.time for c in frame.children)


def _package(path: str | None) -> str:
    p = (path or "").replace("\\", "/")
    for marker in ("langchain_moltcities/", "site-packages/"):
        if marker in p:
            rest = p.split(marker, 1)[1]
            if marker == "langchain_moltcities/":
                return "langchain_moltcities." + rest.removesuffix(".py").replace("/", ".")
            return rest.split("/", 1)[0].removesuffix(".py")
    if "/asyncio/" in p:
        return "asyncio"
    if p.endswith("selectors.py"):
        return "selectors"
    if "/json/" in p:
        return "json"
    return p.rsplit("/", 1)[-1] or "<builtin>"


def breakdown(session: Session) -> Breakdown:
    """Inclusive time of the hot-path steps and self time per package, as fractions."""
    root = session.root_frame()
    if root is None:
        return Breakdown(0.0, [], [], [])
    total = root.time
    spans: dict[str, float] = defaultdict(float)
    packages: dict[str, float] = defaultdict(float)
    functions: dict[str, float] = defaultdict(float)

    def walk(
        frame: Frame,
        open_spans: frozenset[str],
        parent_path: str | None = None,
        parent_function: str = "",
    ) -> None:
        # pyinstrument books a function's own time on a synthetic "[self]" child.
        path = parent_path if frame.is_synthetic else frame.file_path
        own = _self_time(frame)
        packages[_package(path)] += own
        if frame.is_synthetic:
            functions[f"{parent_function} ({_short(parent_path)})"] += own
        else:
            functions[f"{frame.function} ({_short(frame.file_path)})"] += own
        now_open = open_spans
        function = parent_function if frame.is_synthetic else frame.function
        for label, path_part, func, inclusive in SPANS:
            if function != func or path_part not in (path or "").replace("\\", "/"):
                continue
            if not inclusive:
                spans[label] += own
            elif label not in open_spans and not frame.is_synthetic:
                spans[label] += frame.time  # outermost occurrence only: no double counting
                now_open = now_open | {label}
        for child in frame.children:
            walk(child, now_open, frame.file_path, frame.function)

    walk(root, frozenset())
    span_list = [(label, spans.get(label, 0.0) / total) for label, *_ in SPANS]
    pkg_list = sorted(((k, v / total) for k, v in packages.items()), key=lambda kv: -kv[1])
    top = sorted(functions.items(), key=lambda kv: -kv[1])[:15]
    return Breakdown(total, span_list, pkg_list[:10], [(k, v / total) for k, v in top])


def _short(path: str | None) -> str:
    p = (path or "").replace("\\", "/")
    for marker in ("site-packages/", "/lib/python3.11/", "/main/"):
        if marker in p:
            return p.split(marker, 1)[1]
    return p or "<built-in>"
