"""The ``telemed`` command: serve, load."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Optional

import httpx
import typer
from rich.console import Console

from fhir_server.settings import Settings

app = typer.Typer(help="Telemedicine FHIR R4 server", no_args_is_help=True, add_completion=False)
console = Console(stderr=True)


def configure_logging(level: str) -> None:
    from pythonjsonlogger.json import JsonFormatter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def _settings(data: Path | None, store: str | None, **extra) -> Settings:
    values = {k: v for k, v in {"data": data, "store": store, **extra}.items() if v is not None}
    try:
        return Settings(**values)
    except Exception as exc:  # pydantic's ValidationError: refuse unsafe values at start-up
        console.print(f"[red]invalid settings:[/red] {exc}")
        raise typer.Exit(2) from None


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8080, help="Port to listen on."),
    data: Optional[Path] = typer.Option(None, help="Data directory of the embedded store (default ./data)."),
    store: Optional[str] = typer.Option(None, envvar="TELEMED_STORE", help="mongodb://... to use MongoDB."),
    demo: bool = typer.Option(False, help="Load the demo data set (once)."),
) -> None:
    """Run the FHIR server (base URL /fhir)."""
    import uvicorn

    from fhir_server.app import create_app

    settings = _settings(data, store)
    configure_logging(settings.log_level)
    if demo:
        from fhir_server.demo import load_demo

        loaded = asyncio.run(load_demo(settings))
        console.print("demo data loaded" if loaded else "demo data already present")
    console.print(f"FHIR base: http://{host}:{port}/fhir")
    uvicorn.run(create_app(settings), host=host, port=port, log_config=None, access_log=False)


@app.command()
def load(
    paths: list[Path] = typer.Argument(..., help="Bundle (.json) and NDJSON files or folders."),
    data: Optional[Path] = typer.Option(None, help="Data directory of the embedded store."),
    store: Optional[str] = typer.Option(None, envvar="TELEMED_STORE", help="mongodb://... to use MongoDB."),
    url: Optional[str] = typer.Option(None, help="Load into a running server at this FHIR base URL instead."),
    chunk: int = typer.Option(100, help="Resources per batch."),
    concurrency: int = typer.Option(4, help="Batches in flight."),
) -> None:
    """Load resources through the server's write path, with a progress bar and a summary."""
    from fhir_server.load import Loader, expand, progress_bar

    files = expand(paths)
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        console.print(f"[red]not found:[/red] {', '.join(missing)}")
        raise typer.Exit(2)

    async def run():
        with progress_bar(disable=not console.is_terminal) as progress:
            if url:
                async with httpx.AsyncClient(base_url=url.rstrip("/"), timeout=120) as client:
                    return await Loader(client, chunk, concurrency).load(files, progress)
            return await _in_process(lambda client: Loader(client, chunk, concurrency).load(files, progress),
                                     _settings(data, store))

    summary = asyncio.run(run())
    console.print(f"loaded: {summary.loaded}  rejected: {len(summary.rejected)}")
    for where, reason in summary.rejected[:50]:
        console.print(f"  [yellow]{where}[/yellow]: {reason}")
    if len(summary.rejected) > 50:
        console.print(f"  ... and {len(summary.rejected) - 50} more")
    raise typer.Exit(1 if summary.rejected and not summary.loaded else 0)


async def _in_process(work, settings: Settings):
    """Run ``work(client)`` against the app in this process (ASGI transport, no network)."""
    from fhir_server.app import create_app

    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://telemed.local/fhir", timeout=None) as client:
            return await work(client)


if __name__ == "__main__":
    app()
