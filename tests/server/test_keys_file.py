"""``moltcities serve --keys-file``: the keys are never readable by others, and a planted
symlink is refused rather than followed."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from langchain_moltcities.server.serve import serve
from langchain_moltcities.testing import wait_until


def _serve_in_thread(keys_file: Path) -> None:
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            serve(
                port=0, agents=["alice"], keys_file=keys_file, echo=lambda _: None, stop_event=stop
            )
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        wait_until(lambda: keys_file.exists() or errors, "the keys file")
    finally:
        stop.set()
        thread.join(30)
    assert not errors, errors


@pytest.mark.parametrize("existing", [False, True])
def test_the_keys_file_is_owner_only_even_with_umask_0(tmp_path: Path, existing: bool) -> None:
    keys_file = tmp_path / "keys.json"
    if existing:
        keys_file.write_text("{}")
        keys_file.chmod(0o644)  # an old, world-readable file is replaced, not reused as is
    old = os.umask(0)
    try:
        _serve_in_thread(keys_file)
    finally:
        os.umask(old)
    mode = stat.S_IMODE(keys_file.stat().st_mode)
    assert mode == 0o600, oct(mode)
    assert "api_key" in keys_file.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["keys.json"]  # no temporary left behind


@pytest.mark.parametrize("dangling", [False, True])
def test_a_planted_symlink_is_refused_not_followed(tmp_path: Path, dangling: bool) -> None:
    victim = tmp_path / "victim.txt"
    if not dangling:
        victim.write_text("precious")
    link = tmp_path / "keys.json"
    link.symlink_to(victim)
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from langchain_moltcities.cli import app; app()",
            "serve",
            "--port",
            "0",
            "--keys-file",
            str(link),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "symbolic link" in proc.stderr
    if dangling:
        assert not victim.exists()  # nothing created where the link points
    else:
        assert victim.read_text() == "precious"
