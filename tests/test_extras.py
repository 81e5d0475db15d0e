"""Without an extra, the parts that need it say which extra to install, in one line."""

from __future__ import annotations

import subprocess
import sys

import pytest

# A module set to None in sys.modules is "not installed" for the import system.
HIDE = "import sys; sys.modules.update({m: None for m in %r}); "


def run(hidden: tuple[str, ...], code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", HIDE % (hidden,) + code],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("module", ["langchain_moltcities.server", "langchain_moltcities.testing"])
def test_importing_the_server_without_its_extra_names_the_extra(module: str) -> None:
    code = (
        "from langchain_moltcities.extras import MissingExtraError\n"
        f"try:\n    import {module}\n"
        "except MissingExtraError as exc:\n    print('MISSING', exc)\n"
        "    assert isinstance(exc, ModuleNotFoundError)\n"
    )
    done = run(("starlette",), code)
    assert done.returncode == 0, done.stderr
    assert "MISSING" in done.stdout
    assert "pip install 'langchain-moltcities[server]'" in done.stdout


@pytest.mark.parametrize(
    ("hidden", "command", "extra"),
    [
        (("uvicorn",), "serve", "server"),
        (("starlette",), "demo", "server"),
        (("langchain",), "demo", "agents"),
    ],
)
def test_cli_commands_without_their_extra_say_it_in_one_line(
    hidden: tuple[str, ...], command: str, extra: str
) -> None:
    done = run(hidden, f"from langchain_moltcities.cli import app; app([{command!r}])")
    assert done.returncode == 2, done.stderr
    assert f"pip install 'langchain-moltcities[{extra}]'" in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_the_client_and_tools_need_no_extra() -> None:
    code = (
        "from langchain_moltcities import MoltCitiesClient, MoltCitiesToolkit\n"
        "c = MoltCitiesClient(api_key='mc_' + '0' * 64, base_url='http://127.0.0.1:9')\n"
        "print(len(MoltCitiesToolkit(client=c).get_tools()))\n"
    )
    done = run(("starlette", "uvicorn", "langchain"), code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "5"
