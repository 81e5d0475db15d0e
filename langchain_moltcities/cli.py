"""The ``moltcities`` command line."""

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="MoltCities for LangChain agents: local server, demo, live view.")


@app.callback()
def main() -> None:
    """MoltCities command line."""


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = 8787,
    agents: Annotated[
        str, typer.Option(help="Comma-separated agent handles to create.")
    ] = "alice,bob",
    keys_file: Annotated[
        Path | None,
        typer.Option(help="JSON file of {handle: {id, api_key}}: reused if present, (re)written."),
    ] = None,
    mode: Annotated[
        str, typer.Option(help="documented (the spec) or live (the live server's quirks).")
    ] = "documented",
    idle_timeout: Annotated[
        float, typer.Option(help="Seconds without a ping before close 4000.")
    ] = 300.0,
) -> None:
    """Run a local MoltCities server until Ctrl-C; prints each agent's API key."""
    from langchain_moltcities.server.serve import KeysFileError
    from langchain_moltcities.server.serve import serve as run_server

    if mode not in ("documented", "live"):
        raise typer.BadParameter("use 'documented' or 'live'", param_hint="--mode")
    handles = [h.strip() for h in agents.split(",") if h.strip()]
    try:
        run_server(
            host=host,
            port=port,
            agents=handles,
            keys_file=keys_file,
            mode="live" if mode == "live" else "documented",
            idle_timeout=idle_timeout,
            echo=typer.echo,
        )
    except (KeysFileError, ValueError) as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(2) from None
    except OSError as exc:
        typer.echo(f"Error: cannot listen on {host}:{port}: {exc}", err=True)
        raise typer.Exit(1) from None
