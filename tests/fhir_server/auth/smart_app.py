"""A SMART app and its user's browser, for driving the local authorization server in tests:
PKCE, the authorize URL, the login form (parsed from the server's HTML and posted back), the
code exchange, and signed client assertions for Backend Services."""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import secrets
import subprocess
import sys
import threading
import time
import uuid
from html.parser import HTMLParser
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
from jwcrypto import jwk, jwt

from fhir_server.auth import accounts
from fhir_server.auth.client_auth import ASSERTION_TYPE

ROOT = "http://testserver"
BASE = f"{ROOT}/fhir"
REDIRECT = "https://app.example/callback"
PASSWORD = "correct horse battery"


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


def authorize_url(root: str, client_id: str, scope: str, challenge: str, *, redirect_uri: str = REDIRECT,
                  aud: str | None = None, state: str = "st-1", **extra) -> str:
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "scope": scope,
              "state": state, "aud": aud or f"{root}/fhir", "code_challenge": challenge,
              "code_challenge_method": "S256", **extra}
    return f"{root}/auth/authorize?{urlencode({k: v for k, v in params.items() if v is not None})}"


class LoginForm(HTMLParser):
    """The form of the server's login page: its action and its inputs' names and values."""

    def __init__(self, html: str):
        super().__init__()
        self.action, self.fields, self.error = None, {}, ""
        self._in_error = False
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.action = a.get("action")
        elif tag == "input" and a.get("name"):
            self.fields[a["name"]] = a.get("value") or ""
        elif tag == "p" and "error" in (a.get("class") or ""):
            self._in_error = True

    def handle_data(self, data):
        if self._in_error:
            self.error += data

    def handle_endtag(self, tag):
        if tag == "p":
            self._in_error = False


async def login(browser: httpx.AsyncClient, url: str, username: str, password: str = PASSWORD,
                decision: str = "allow", **fields) -> httpx.Response:
    """Open the authorize URL, fill in the login form and post it; the answer to the post."""
    page = await browser.get(url)
    assert page.status_code == 200, page.text
    form = LoginForm(page.text)
    data = {**form.fields, "username": username, "password": password, "decision": decision, **fields}
    return await browser.post(form.action, data=data)


def callback(response: httpx.Response) -> dict[str, str]:
    """The parameters of the redirect back to the app."""
    assert response.status_code in (302, 303), response.text
    return dict(parse_qsl(urlsplit(response.headers["location"]).query))


async def exchange(browser: httpx.AsyncClient, root: str, client_id: str, code: str, verifier: str,
                   redirect_uri: str = REDIRECT, **extra) -> httpx.Response:
    return await browser.post(f"{root}/auth/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri, "client_id": client_id,
        "code_verifier": verifier, **extra})


async def launch(browser: httpx.AsyncClient, client_id: str, scope: str, username: str, root: str = ROOT,
                 **fields) -> dict:
    """A whole standalone or EHR launch (``launch=...`` in ``fields``): the token response."""
    verifier, challenge = pkce()
    extra = {k: fields.pop(k) for k in ("launch", "nonce") if k in fields}
    response = await login(browser, authorize_url(root, client_id, scope, challenge, **extra), username, **fields)
    params = callback(response)
    assert params.get("state") == "st-1" and "code" in params, params
    token = await exchange(browser, root, client_id, params["code"], verifier)
    assert token.status_code == 200, token.text
    return token.json()


async def add_client(svc, **spec) -> tuple[dict, str | None]:
    spec.setdefault("name", "Test app")
    spec.setdefault("redirect_uris", [REDIRECT])
    record, secret = accounts.new_client(spec)
    assert await accounts.save_client(svc.auth_state, record)
    return record, secret


async def add_user(svc, username: str, fhir_user: str) -> dict:
    record = accounts.new_user(username, PASSWORD, fhir_user)
    assert await accounts.save_user(svc.auth_state, record)
    return record


def telemed(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
    """The ``telemed`` command in a process of its own."""
    return subprocess.run([sys.executable, "-m", "fhir_server.cli", *args], input=input, capture_output=True,
                          text=True, timeout=120)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# Backend Services

def new_key(alg: str = "RS384", kid: str | None = None) -> jwk.JWK:
    kid = kid or uuid.uuid4().hex[:8]
    if alg.startswith("ES"):
        return jwk.JWK.generate(kty="EC", crv="P-384", kid=kid, alg=alg, use="sig")
    return jwk.JWK.generate(kty="RSA", size=2048, kid=kid, alg=alg, use="sig")


def public_jwks(*keys: jwk.JWK) -> dict:
    return {"keys": [json.loads(k.export_public()) for k in keys]}


def assertion(key: jwk.JWK, client_id: str, aud: str, alg: str | None = None, lifetime: int = 240,
              header: dict | None = None, **claims) -> str:
    now = int(time.time())
    body = {"iss": client_id, "sub": client_id, "aud": aud, "exp": now + lifetime, "iat": now,
            "jti": uuid.uuid4().hex, **claims}
    token = jwt.JWT(header={"alg": alg or key.get("alg"), "kid": key.kid, "typ": "JWT", **(header or {})},
                    claims=body)
    token.make_signed_token(key)
    return token.serialize()


def client_credentials(client_id: str, signed: str, scope: str = "system/*.rs") -> dict[str, str]:
    return {"grant_type": "client_credentials", "scope": scope, "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": signed, "client_id": client_id}


class JwksServer:
    """A real HTTP server publishing a JWK Set, counting how often it is fetched."""

    def __init__(self, jwks: dict):
        self.jwks, self.hits = jwks, 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.hits += 1
                body = json.dumps(outer.jwks).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/.well-known/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
