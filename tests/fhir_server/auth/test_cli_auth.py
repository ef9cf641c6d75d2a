"""``telemed client|user|token|keys``: registration and tokens from the command line, checked
against the server built on the same data directory and store."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from typer.testing import CliRunner

from fhir_server.app import create_app
from fhir_server.auth import accounts, tokens
from fhir_server.cli import app as cli
from tests.fhir_server.auth.smart_app import BASE, PASSWORD, REDIRECT, ROOT, launch, new_key, public_jwks

runner = CliRunner()


def telemed(settings, *args: str, input: str | None = None):
    """``telemed`` on ``settings``' data directory (and store, for commands that use one)."""
    uses_store = args[0] in ("client", "user")
    where = ["--data", str(settings.data)] + (["--store", settings.store] if settings.store and uses_store else [])
    return runner.invoke(cli, [*args, *where], input=input)


def on_app(settings, work):
    """Run ``work(app, http)`` against a server app on ``settings`` (a loop of its own)."""
    async def run():
        application = create_app(settings)
        async with application.router.lifespan_context(application):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url=ROOT) as http:
                return await work(application, http)
    return asyncio.run(run())


def test_client_add_list_remove(settings):
    added = telemed(settings, "client", "add", "--name", "Portal", "--public", "--redirect-uri", REDIRECT,
                    "--redirect-uri", "https://app.example/other", "--scope", "launch/patient patient/*.rs")
    assert added.exit_code == 0, added.output
    client_id = added.stdout.split("client_id: ")[1].split()[0]
    assert "client_secret" not in added.stdout
    listed = telemed(settings, "client", "list")
    assert listed.stdout.split("\t")[:3] == [client_id, "public", "Portal"]
    record = on_app(settings, lambda app, http: accounts.get_client(app.state.services.auth_state, client_id))
    assert record["redirect_uris"] == [REDIRECT, "https://app.example/other"]
    assert telemed(settings, "client", "remove", client_id).exit_code == 0
    assert telemed(settings, "client", "list").stdout == ""
    assert telemed(settings, "client", "remove", client_id).exit_code == 1


def test_symmetric_client_secret_is_printed_once_and_authenticates(settings):
    added = telemed(settings, "client", "add", "--name", "Gateway", "--secret", "--scope", "system/*.rs",
                    "--grant-type", "client_credentials", "--client-id", "gw")
    assert added.exit_code == 0, added.output
    secret = added.stdout.split("client_secret: ")[1].split()[0]
    assert "gw" in telemed(settings, "client", "list").stdout and secret not in telemed(settings, "client", "list").stdout

    async def work(app, http):
        return await http.post("/auth/token", auth=("gw", secret),
                               data={"grant_type": "client_credentials", "scope": "system/Patient.rs"})
    response = on_app(settings, work)
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "system/Patient.rs"
    again = telemed(settings, "client", "add", "--name", "Gateway", "--secret", "--scope", "system/*.rs",
                    "--grant-type", "client_credentials", "--client-id", "gw")
    assert again.exit_code == 1


def test_asymmetric_client_from_a_jwks_file_or_url(settings, tmp_path):
    key = new_key("RS384")
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(public_jwks(key)))
    by_file = telemed(settings, "client", "add", "--name", "Registry", "--jwks", str(path), "--scope", "system/*.rs")
    assert by_file.exit_code == 0, by_file.output
    by_url = telemed(settings, "client", "add", "--name", "Devices", "--jwks-url", "https://devices.example/jwks.json",
                     "--scope", "system/Observation.cruds")
    assert by_url.exit_code == 0, by_url.output
    rows = [line.split("\t") for line in telemed(settings, "client", "list").stdout.splitlines()]
    assert sorted((r[1], r[2], r[3]) for r in rows) == [("confidential-asymmetric", "Devices", "client_credentials"),
                                                        ("confidential-asymmetric", "Registry", "client_credentials")]


@pytest.mark.parametrize("kinds", [[], ["--public", "--secret"], ["--public", "--jwks-url", "https://k.example/j"]])
def test_client_add_needs_exactly_one_kind(settings, kinds):
    result = telemed(settings, "client", "add", "--name", "X", "--scope", "user/*.rs", "--redirect-uri", REDIRECT, *kinds)
    assert result.exit_code == 2


def test_client_add_refuses_an_invalid_registration(settings):
    result = telemed(settings, "client", "add", "--name", "X", "--public", "--scope", "user/*.rs nonsense",
                     "--redirect-uri", REDIRECT)
    assert result.exit_code == 2 and "unknown scopes: nonsense" in result.stderr


def test_user_added_from_stdin_can_log_in(settings):
    client = telemed(settings, "client", "add", "--name", "App", "--public", "--redirect-uri", REDIRECT,
                     "--scope", "user/*.rs openid fhirUser")
    client_id = client.stdout.split("client_id: ")[1].split()[0]
    added = telemed(settings, "user", "add", "--username", "doc", "--password-stdin", "--fhir-user", "Practitioner/9",
                    input=PASSWORD + "\n")
    assert added.exit_code == 0, added.output
    assert telemed(settings, "user", "list").stdout == "doc\tPractitioner/9\n"
    body = on_app(settings, lambda app, http: launch(http, client_id, "user/*.rs openid fhirUser", "doc"))
    assert tokens.unverified_claims(body["id_token"])["fhirUser"] == f"{BASE}/Practitioner/9"
    assert telemed(settings, "user", "add", "--username", "doc", "--password", PASSWORD, "--fhir-user",
                   "Practitioner/9").exit_code == 1
    assert telemed(settings, "user", "remove", "doc").exit_code == 0
    assert telemed(settings, "user", "list").stdout == ""


@pytest.mark.parametrize("args", [["--password", "short"], ["--password", PASSWORD, "--password-stdin"], []])
def test_user_add_refuses_bad_passwords_and_options(settings, args):
    result = telemed(settings, "user", "add", "--username", "doc", "--fhir-user", "Practitioner/9", *args)
    assert result.exit_code == 2


def test_token_is_an_admin_token_the_server_accepts(settings):
    printed = telemed(settings, "token", "--scope", "system/*.*", "--url", BASE, "--lifetime", "120")
    assert printed.exit_code == 0, printed.output
    token = printed.stdout.strip()
    claims = tokens.unverified_claims(token)
    assert claims["iss"] == claims["aud"] == BASE and claims["exp"] - claims["iat"] == 120

    async def work(app, http):
        return await http.get("/admin/clients", headers={"Authorization": f"Bearer {token}"})
    assert on_app(settings, work).status_code == 200


def test_token_for_another_url_is_refused_by_the_server(settings):
    token = telemed(settings, "token", "--scope", "system/*.*").stdout.strip()
    assert tokens.unverified_claims(token)["aud"] == "http://127.0.0.1:8080/fhir"

    async def work(app, http):
        return await http.get("/fhir/Patient", headers={"Authorization": f"Bearer {token}"})
    assert on_app(settings, work).status_code == 401


def test_token_needs_a_resource_scope(settings):
    assert telemed(settings, "token", "--scope", "openid").exit_code == 2


def test_keys_rotate_keeps_the_previous_key_valid(settings):
    before = telemed(settings, "token", "--scope", "system/*.*", "--url", BASE).stdout.strip()
    rotated = telemed(settings, "keys", "rotate")
    assert rotated.exit_code == 0 and "new signing key:" in rotated.stdout
    new_kid = rotated.stdout.split("new signing key: ")[1].strip()
    after = telemed(settings, "token", "--scope", "system/*.*", "--url", BASE).stdout.strip()
    assert tokens.header_of(after)["kid"] == new_kid != tokens.header_of(before)["kid"]

    async def work(app, http):
        jwks = (await http.get("/auth/jwks")).json()
        codes = [(await http.get("/admin/users", headers={"Authorization": f"Bearer {t}"})).status_code
                 for t in (before, after)]
        return {k["kid"] for k in jwks["keys"]}, codes
    kids, codes = on_app(settings, work)
    assert codes == [200, 200] and new_kid in kids and tokens.header_of(before)["kid"] in kids
    telemed(settings, "keys", "rotate")
    kids, codes = on_app(settings, work)
    assert codes == [401, 200]  # two rotations later the first key is gone
