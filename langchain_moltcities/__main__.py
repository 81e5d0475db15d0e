"""``python -m langchain_moltcities``: the ``moltcities`` command, from a source tree too
(``make demo`` runs it that way, before anything built the package's entry points)."""

from langchain_moltcities.cli import app

if __name__ == "__main__":  # importing it (pdoc does) runs nothing
    app(prog_name="moltcities")
