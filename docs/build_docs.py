"""Build the API reference (HTML) from the docstrings with pdoc: ``make docs``.

Every module of the package is documented, the submodules too (the package's ``__all__``
lists only the main names, which would hide them from pdoc otherwise).
"""

from __future__ import annotations

import argparse
import pkgutil
from pathlib import Path

import pdoc
import pdoc.render

import langchain_moltcities


def modules() -> list[str]:
    """The package and every submodule, by dotted name."""
    prefix = f"{langchain_moltcities.__name__}."
    found = [m.name for m in pkgutil.walk_packages(langchain_moltcities.__path__, prefix)]
    return [langchain_moltcities.__name__, *sorted(found)]


def main() -> None:
    """Write the reference to ``--out`` (default ``docs/api``)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "api")
    out = parser.parse_args().out
    pdoc.render.configure(docformat="restructuredtext", footer_text="langchain-moltcities")
    pdoc.pdoc(*modules(), output_directory=out)
    print(f"API reference: {out / 'index.html'}")


if __name__ == "__main__":
    main()
