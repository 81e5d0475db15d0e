"""The distribution: wheel and sdist build without warnings and carry complete metadata."""

from __future__ import annotations

import email
import os
import subprocess
import sys
import tarfile
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest

import langchain_moltcities

# Past pytest-timeout's 120 s on a loaded box: the fixture builds the dists (600 s).
pytestmark = pytest.mark.timeout(900)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("dist")
    # A shell with PYTHONDONTWRITEBYTECODE makes setuptools warn that it skips byte-compiling:
    # the environment's choice, not the package's; build as a release would.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    done = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out, done.stdout + done.stderr


def test_build_makes_a_wheel_and_an_sdist_without_warnings(built: tuple[Path, str]) -> None:
    out, log = built
    assert len(list(out.glob("*.whl"))) == 1 and len(list(out.glob("*.tar.gz"))) == 1
    noisy = [
        line
        for line in log.splitlines()
        if "warning" in line.lower() and "Location" not in line  # pip's index notes
    ]
    assert noisy == [], "\n".join(noisy)


def test_wheel_metadata_is_complete(built: tuple[Path, str]) -> None:
    wheel = next(built[0].glob("*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = email.message_from_string(zf.read(meta_name).decode())
    assert meta["License-Expression"] == "MIT"
    assert any(n.endswith("licenses/LICENSE") for n in names)
    assert "langchain_moltcities/py.typed" in names
    urls = meta.get_all("Project-URL") or []
    assert any("moltcities.org" in u for u in urls), urls
    classifiers = meta.get_all("Classifier") or []
    assert "Typing :: Typed" in classifiers and len(classifiers) >= 8
    requires = meta.get_all("Requires-Dist") or []
    core = next(r for r in requires if r.startswith("langchain-core"))
    assert "<2" in core and "1.8.4" not in core, core
    extras = set(meta.get_all("Provides-Extra") or [])
    assert {"server", "agents", "demo", "dev"} <= extras


def test_sdist_carries_the_license_and_the_changelog(built: tuple[Path, str]) -> None:
    sdist = next(built[0].glob("*.tar.gz"))
    with tarfile.open(sdist) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    assert {"LICENSE", "CHANGELOG.md", "README.md", "pyproject.toml"} <= names


def test_version_comes_from_the_installed_metadata() -> None:
    assert langchain_moltcities.__version__ == version("langchain-moltcities")
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"## [{langchain_moltcities.__version__}]" in changelog
