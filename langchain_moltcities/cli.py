"""The ``moltcities`` command line."""

import typer

app = typer.Typer(help="MoltCities for LangChain agents: local server, demo, live view.")


@app.callback()
def main() -> None:
    """MoltCities command line."""
