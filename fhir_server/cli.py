"""The ``telemed`` command: serve, load; the local authorization server's client, user, token and keys."""

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
    token: Optional[str] = typer.Option(None, envvar="TELEMED_TOKEN",
                                        help="With --url: the access token (see `telemed token`) to load with."),
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
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                async with httpx.AsyncClient(base_url=url.rstrip("/"), timeout=120, headers=headers) as client:
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

    from fhir_server.auth.tokens import system_token

    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        base = "http://telemed.local/fhir"
        svc = application.state.services
        headers = {"Authorization": f"Bearer {system_token(svc.keys, svc.settings, base, lifetime=7 * 24 * 3600)}"}
        async with httpx.AsyncClient(transport=transport, base_url=base, timeout=None, headers=headers) as client:
            return await work(client)


@app.command()
def export(
    out: Path = typer.Option(..., help="Folder for the NDJSON files and manifest.json (an unfinished export there resumes)."),
    type: Optional[str] = typer.Option(None, "--type", help="Resource types, comma-separated (default: every type)."),
    since: Optional[str] = typer.Option(None, help="Only resources changed after this instant (e.g. 2026-01-01T00:00:00Z)."),
    type_filter: list[str] = typer.Option([], help="A search query per type, e.g. 'Observation?code=...' (repeatable)."),
    data: Optional[Path] = typer.Option(None, help="Data directory of the embedded store."),
    store: Optional[str] = typer.Option(None, envvar="TELEMED_STORE", help="mongodb://... to use MongoDB."),
) -> None:
    """Bulk-export resources as NDJSON files (the $export engine, run here with a progress bar)."""
    from fhir_server.app import open_store
    from fhir_server.bulk.local import export as run_export
    from fhir_server.errors import OperationOutcomeError
    from fhir_server.load import progress_bar

    settings = _settings(data, store)
    types = [t.strip() for t in type.split(",") if t.strip()] if type else None

    async def run():
        db = open_store(settings)
        if hasattr(db, "start"):
            await db.start()
        try:
            with progress_bar(disable=not console.is_terminal) as progress:
                tasks: dict = {}

                def show(t: str, n: int, total: int | None) -> None:
                    if t not in tasks:
                        tasks[t] = progress.add_task(t, total=total)
                    progress.update(tasks[t], completed=n, **({"total": total} if total is not None else {}))

                return await run_export(db, settings, out, types, since, type_filter, show)
        finally:
            await db.close()

    try:
        manifest = asyncio.run(run())
    except OperationOutcomeError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    for item in manifest["output"]:
        typer.echo(f"{item['type']}\t{item['count']}\t{out / item['url']}")


@app.command()
def reindex(
    type: Optional[str] = typer.Option(None, "--type", help="Resource types, comma-separated (default: every type)."),
    batch: int = typer.Option(500, min=1, max=10_000, help="Resources per transaction."),
    data: Optional[Path] = typer.Option(None, help="Data directory of the embedded store."),
    store: Optional[str] = typer.Option(None, envvar="TELEMED_STORE", help="mongodb://... to use MongoDB."),
) -> None:
    """Rebuild the search index of every current resource from its stored JSON.

    For data written before a search parameter or index existed (composite parameters, our own
    SearchParameters such as _compartment): versions are not changed. The server may keep
    running; a resource written meanwhile keeps the index its writer gave it."""
    from fhir_server.app import open_store
    from fhir_server.load import progress_bar
    from fhir_server.search import params as search_params

    settings = _settings(data, store)
    known = search_params.resource_types()
    types = [t.strip() for t in type.split(",") if t.strip()] if type else sorted(known)
    unknown = [t for t in types if t not in known]
    if unknown:
        console.print(f"[red]not FHIR R4 resource types: {', '.join(unknown)}[/red]")
        raise typer.Exit(2)

    async def run() -> dict[str, int]:
        db = open_store(settings)
        if hasattr(db, "start"):
            await db.start()
        done: dict[str, int] = {}
        try:
            with progress_bar(disable=not console.is_terminal) as progress:
                task = progress.add_task("reindex", total=len(types))
                for t in types:
                    progress.update(task, description=t)
                    after = None
                    while (after := await db.reindex(t, after, batch)) is not None:
                        done[t] = done.get(t, 0) + 1
                    progress.advance(task)
        finally:
            await db.close()
        return done

    done = asyncio.run(run())
    typer.echo(f"reindexed: {', '.join(sorted(done))}" if done else "nothing to reindex")


# The local authorization server: clients, users, tokens, keys.

client_app = typer.Typer(help="Clients registered with the local authorization server.", no_args_is_help=True)
user_app = typer.Typer(help="User accounts (practitioners, patients) of the local authorization server.",
                       no_args_is_help=True)
keys_app = typer.Typer(help="The local authority's signing keys.", no_args_is_help=True)
app.add_typer(client_app, name="client")
app.add_typer(user_app, name="user")
app.add_typer(keys_app, name="keys")

DATA_HELP = "Data directory (default ./data)."
DEFAULT_BASE = "http://127.0.0.1:8080/fhir"  # ``telemed serve``'s default address
STORE_HELP = "mongodb://... when the server uses MongoDB."


async def _with_auth_state(settings: Settings, work):
    """Run ``work(state)`` on the authority's state (the server may be running: the store is shared)."""
    from fhir_server.app import open_auth_state, open_store

    store = open_store(settings)
    state = open_auth_state(settings, store)
    try:
        return await work(state)
    finally:
        await state.close()
        await store.close()


@client_app.command("add")
def client_add(
    name: str = typer.Option(..., help="The application's name (shown on the login page)."),
    scope: str = typer.Option(..., help='Scopes the client may be granted, e.g. "launch/patient openid fhirUser patient/*.rs".'),
    public: bool = typer.Option(False, "--public", help="A public client (browser or native app, PKCE only)."),
    secret: bool = typer.Option(False, "--secret", help="A confidential client with a generated secret."),
    jwks: Optional[Path] = typer.Option(None, help="A JWK Set file of the client's public keys (private_key_jwt)."),
    jwks_url: Optional[str] = typer.Option(None, help="The URL of the client's JWK Set (private_key_jwt)."),
    redirect_uri: list[str] = typer.Option([], help="A registered redirect URI (repeatable)."),
    grant_type: list[str] = typer.Option([], help="authorization_code, refresh_token, client_credentials (repeatable; default by type)."),
    client_id: Optional[str] = typer.Option(None, help="The client_id (default: generated)."),
    data: Optional[Path] = typer.Option(None, help=DATA_HELP),
    store: Optional[str] = typer.Option(None, envvar="TELEMED_STORE", help=STORE_HELP),
) -> None:
    """Register a client; prints its client_id (and a confidential client's secret, shown only once)."""
    import json

    from fhir_server.auth import accounts

    kinds = [k for k, on in (("public", public), ("secret", secret), ("jwks", jwks), ("jwks-url", jwks_url)) if on]
    if len(kinds) != 1:
        console.print("[red]choose one of --public, --secret, --jwks FILE, --jwks-url URL[/red]")
        raise typer.Exit(2)
    spec: dict = {"name": name, "scope": scope, "redirect_uris": redirect_uri, "client_id": client_id,
                  "grant_types": grant_type or None,
                  "type": {"public": "public", "secret": "confidential-symmetric"}.get(kinds[0], "confidential-asymmetric")}
    try:
        if jwks:
            spec["jwks"] = json.loads(jwks.read_text())
        if jwks_url:
            spec["jwks_url"] = jwks_url
        record, generated = accounts.new_client(spec)
    except (ValueError, OSError) as exc:
        console.print(f"[red]invalid client:[/red] {exc}")
        raise typer.Exit(2) from None
    if not asyncio.run(_with_auth_state(_settings(data, store), lambda state: accounts.save_client(state, record))):
        console.print(f"[red]client_id {record['client_id']} is taken[/red]")
        raise typer.Exit(1)
    typer.echo(f"client_id: {record['client_id']}")
    if generated:
        typer.echo(f"client_secret: {generated}")
        console.print("The secret is not stored and is shown only now.")


@client_app.command("list")
def client_list(
    data: Optional[Path] = typer.Option(None, help=DATA_HELP),
    store: Optional[str] = typer.Option(None, envvar="TELEMED_STORE", help=STORE_HELP),
) -> None:
    """List registered clients (tab-separated: client_id, type, name, grant types, scope)."""
    from fhir_server.auth import accounts

    for c in asyncio.run(_with_auth_state(_settings(data, store), accounts.list_clients)):
        typer.echo("\t".join([c["client_id"], c["type"], c["name"], ",".join(c["grant_types"]), c["scope"]]))


@client_app.command("remove")
def client_remove(
    client_id: str = typer.Argument(..., help="The client to remove."),
    data: Optional[Path] = typer.Option(None, help=DATA_HELP),
    store: Optional[str] = typer.Option(None, envvar="TELEMED_STORE", help=STORE_HELP),
) -> None:
    """Remove a client (its tokens stay valid until they expire; revoke them to end them now)."""
    from fhir_server.auth import accounts

    if not asyncio.run(_with_auth_state(_settings(data, store), lambda s: accounts.remove_client(s, client_id))):
        console.print(f"[red]no client {client_id}[/red]")
        raise typer.Exit(1)
    typer.echo(f"removed {client_id}")


@user_app.command("add")
def user_add(
    username: str = typer.Option(..., help="The login name."),
    fhir_user: str = typer.Option(..., help="The user's FHIR resource: Practitioner/1, Patient/2, ..."),
    password: Optional[str] = typer.Option(None, help="The password (prefer --password-stdin: arguments are visible to other users)."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from standard input."),
    data: Optional[Path] = typer.Option(None, help=DATA_HELP),
    store: Optional[str] = typer.Option(None, envvar="TELEMED_STORE", help=STORE_HELP),
) -> None:
    """Create a user account linked to a Practitioner or Patient."""
    from fhir_server.auth import accounts

    if password_stdin == (password is not None):
        console.print("[red]give exactly one of --password or --password-stdin[/red]")
        raise typer.Exit(2)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    try:
        record = accounts.new_user(username, password, fhir_user)
    except ValueError as exc:
        console.print(f"[red]invalid user:[/red] {exc}")
        raise typer.Exit(2) from None
    if not asyncio.run(_with_auth_state(_settings(data, store), lambda state: accounts.save_user(state, record))):
        console.print(f"[red]username {username} is taken[/red]")
        raise typer.Exit(1)
    typer.echo(f"user: {username} ({fhir_user})")


@user_app.command("list")
def user_list(
    data: Optional[Path] = typer.Option(None, help=DATA_HELP),
    store: Optional[str] = typer.Option(None, envvar="TELEMED_STORE", help=STORE_HELP),
) -> None:
    """List user accounts (tab-separated: username, fhirUser)."""
    from fhir_server.auth import accounts

    for u in asyncio.run(_with_auth_state(_settings(data, store), accounts.list_users)):
        typer.echo(f"{u['username']}\t{u['fhirUser']}")


@user_app.command("remove")
def user_remove(
    username: str = typer.Argument(..., help="The user to remove."),
    data: Optional[Path] = typer.Option(None, help=DATA_HELP),
    store: Optional[str] = typer.Option(None, envvar="TELEMED_STORE", help=STORE_HELP),
) -> None:
    """Remove a user account."""
    from fhir_server.auth import accounts

    if not asyncio.run(_with_auth_state(_settings(data, store), lambda s: accounts.remove_user(s, username))):
        console.print(f"[red]no user {username}[/red]")
        raise typer.Exit(1)
    typer.echo(f"removed {username}")


@app.command()
def token(
    scope: str = typer.Option(..., help='The scopes, e.g. "system/*.*" (an admin token) or "system/Patient.rs".'),
    url: Optional[str] = typer.Option(None, help="The server's FHIR base URL: the token's aud (and iss unless the issuer setting is set)."),
    lifetime: int = typer.Option(300, min=1, max=24 * 3600, help="Seconds the token is valid."),
    subject: str = typer.Option("telemed-cli", help="The token's sub and client_id."),
    data: Optional[Path] = typer.Option(None, help=DATA_HELP),
) -> None:
    """Print a short-lived access token signed by the local authority (for administration and scripts)."""
    from fhir_server.auth import scopes as scope_parser
    from fhir_server.auth import tokens
    from fhir_server.auth.keys import KeyRing

    settings = _settings(data, None, base_url=url.rstrip("/") if url else None)
    if not scope_parser.parse(scope).grants:
        console.print("[red]--scope needs at least one resource scope such as system/*.*[/red]")
        raise typer.Exit(2)
    keys = KeyRing(settings.keys_path())
    typer.echo(tokens.system_token(keys, settings, DEFAULT_BASE, scope_parser.parse(scope).text, lifetime, subject))


@keys_app.command("rotate")
def keys_rotate(data: Optional[Path] = typer.Option(None, help=DATA_HELP)) -> None:
    """Make a new signing key; the previous one stays valid, older ones are removed."""
    from fhir_server.auth.keys import KeyRing

    settings = _settings(data, None)
    try:
        kid = KeyRing(settings.keys_path()).rotate()
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    typer.echo(f"new signing key: {kid}")
    console.print("Running servers sign with the new key within seconds; tokens of the previous key stay valid.")


if __name__ == "__main__":
    app()
