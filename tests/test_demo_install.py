"""What `make demo` installs: requirements/demo.txt pins every dependency of the `demo` extra
within pyproject.toml's ranges (nothing is resolved at install time, so a missing or
out-of-range pin would only show on a user's first run), and the demo starts as
`python -m langchain_moltcities` from the source tree, without the `moltcities` script."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements" / "demo.txt"
SELF = "langchain-moltcities"


def pins() -> dict[str, Requirement]:
    lines = [ln.strip() for ln in LOCK.read_text().splitlines()]
    reqs = [Requirement(ln) for ln in lines if ln and not ln.startswith("#")]
    return {canonicalize_name(r.name): r for r in reqs}


def demo_requirements() -> list[Requirement]:
    """The core dependencies and the extras `demo` names, self-references followed."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras: dict[str, list[str]] = project["optional-dependencies"]
    found = [Requirement(r) for r in project["dependencies"]]
    todo, seen = ["demo"], set()
    while todo:
        extra = todo.pop()
        seen.add(extra)
        for text in extras[extra]:
            req = Requirement(text)
            if canonicalize_name(req.name) == SELF:
                todo += [e for e in req.extras if e not in seen]
            else:
                found.append(req)
    return found


def test_every_demo_dependency_is_pinned_within_its_range() -> None:
    pinned = pins()
    assert SELF not in pinned  # the tree itself is put on the path, never installed from PyPI
    for req in demo_requirements():
        name = canonicalize_name(req.name)
        assert name in pinned, f"{req} is not pinned in {LOCK.name}: run make demo-lock"
        (spec,) = pinned[name].specifier
        assert spec.operator == "==", pinned[name]
        assert req.specifier.contains(spec.version, prereleases=True), (
            f"{LOCK.name} pins {name}=={spec.version}, outside {req}: run make demo-lock"
        )


def test_the_pins_are_closed_under_their_own_requirements() -> None:
    """Installed with --no-deps, so each pinned package's requirements must be pinned too
    (read from the metadata of the version installed here: `make install` holds them all)."""
    pinned = pins()
    checked = 0
    for name, pin in pinned.items():
        if pin.marker is not None and not pin.marker.evaluate():
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        checked += 1
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            assert canonicalize_name(req.name) in pinned, (
                f"{name} needs {req}, which {LOCK.name} does not pin: run make demo-lock"
            )
    assert checked >= 40, f"only {checked} of the pinned packages are installed here"


def test_the_demo_command_runs_as_a_module() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "langchain_moltcities", "demo", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "--duration" in done.stdout and "moltcities demo" in done.stdout
