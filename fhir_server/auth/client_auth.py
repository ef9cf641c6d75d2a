"""Client authentication at the token, introspection and revocation endpoints.

- ``private_key_jwt`` (RFC 7523, SMART Backend Services): ``client_assertion_type=
  urn:ietf:params:oauth:client-assertion-type:jwt-bearer`` and ``client_assertion``, a JWT
  signed RS384 or ES384 with a key of the client's registered JWKS (by value, or fetched from
  its ``jwks_url`` and cached for ``JWKS_TTL`` seconds). Checks: ``kid`` names a registered key,
  ``iss`` = ``sub`` = client_id, ``aud`` = the endpoint's URL (the token endpoint's is always
  accepted), ``exp`` in the future and at most five minutes away, ``jti`` not seen before
  (AuthState kind ``assertion`` until the assertion expires).
- ``client_secret_basic`` / ``client_secret_post`` for confidential-symmetric clients.
- ``none``: a public client names itself with ``client_id``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from dataclasses import dataclass
from urllib.parse import unquote_plus

import httpx
from jwcrypto import jwk

from fhir_server.auth import accounts, tokens
from fhir_server.auth.oauth import OAuthError, endpoint, invalid_client, invalid_request
from fhir_server.errors import OperationOutcomeError

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ALGS = ("RS384", "ES384")
MAX_ASSERTION_SECONDS = 300
JWKS_TTL = 300.0  # seconds a fetched JWKS is used before it is fetched again
JWKS_REFETCH = 10.0  # an unknown kid refetches a JWKS at most this often
MAX_JWKS_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class Authenticated:
    client: dict
    method: str  # private_key_jwt, client_secret_basic, client_secret_post, none

    @property
    def client_id(self) -> str:
        return self.client["client_id"]

    @property
    def confidential(self) -> bool:
        return self.method != "none"


def claimed_client_id(request, form: dict) -> str:
    """Who the request says it is, before any check (the rate limit's key)."""
    if form.get("client_assertion"):
        try:
            return str(tokens.unverified_claims(form["client_assertion"]).get("iss") or "")
        except OperationOutcomeError:
            return ""
    basic = _basic(request)
    return basic[0] if basic else form.get("client_id", "")


def _basic(request) -> tuple[str, str] | None:
    raw = request.headers.get("authorization", "")
    scheme, _, value = raw.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise invalid_client("The Basic authorization header is malformed", basic=True) from None
    if not sep:
        raise invalid_client("The Basic authorization header is malformed", basic=True)
    return unquote_plus(user), unquote_plus(password)  # RFC 6749 2.3.1: form-encoded, then Base64


class ClientAuth:
    """Authenticates clients; holds the per-process cache of fetched JWKS documents."""

    def __init__(self, fetch_timeout: float = 5.0):
        self.fetch_timeout = fetch_timeout
        self._jwks: dict[str, tuple[jwk.JWKSet, float]] = {}
        self._locks: dict[str, asyncio.Lock] = {}  # one fetch at a time per URL

    async def authenticate(self, request, form: dict, svc, audiences: set[str]) -> Authenticated:
        state = svc.auth_state
        if form.get("client_assertion_type") or form.get("client_assertion"):
            if form.get("client_assertion_type") != ASSERTION_TYPE:
                raise invalid_request(f"client_assertion_type must be {ASSERTION_TYPE}")
            if not form.get("client_assertion"):
                raise invalid_request("client_assertion is missing")
            client = await self._assertion(form["client_assertion"], state, audiences)
            if form.get("client_id") not in (None, "", client["client_id"]):
                raise invalid_client("client_id does not match the client assertion's issuer")
            return Authenticated(client, "private_key_jwt")
        basic = _basic(request)
        if basic is not None:
            if form.get("client_secret"):
                raise invalid_request("Use one client authentication method, not Basic and client_secret")
            return Authenticated(await _secret(state, *basic, basic=True), "client_secret_basic")
        client_id = form.get("client_id", "")
        if form.get("client_secret"):
            return Authenticated(await _secret(state, client_id, form["client_secret"], basic=False), "client_secret_post")
        client = await accounts.get_client(state, client_id)
        if client is None:
            raise invalid_client("Unknown client (client_id)" if client_id else "The client is not identified (client_id)")
        if client["type"] != "public":
            raise invalid_client(f"Client {client_id} is confidential and must authenticate")
        return Authenticated(client, "none")

    async def caller(self, request, form: dict, svc, name: str, confidential: bool) -> Authenticated | None:
        """The caller of the introspection or revocation endpoint ``name``: an admin access token
        (``Authorization: Bearer``, ``system/*.*``; None) or an authenticated client."""
        if request.headers.get("authorization", "").lower().startswith("bearer "):
            try:
                who = await svc.principal(request)
            except OperationOutcomeError as exc:
                raise OAuthError("invalid_token", str(exc), 401, exc.headers) from None
            if not who.admin:
                raise OAuthError("insufficient_scope", "Only an admin token (system/*.*) may call this endpoint", 403)
            return None
        audiences = {endpoint(request, svc.settings, "token"), endpoint(request, svc.settings, name)}
        client = await self.authenticate(request, form, svc, audiences)
        if confidential and not client.confidential:
            raise invalid_client(f"Only confidential clients and admins may call the {name} endpoint")
        return client

    async def _assertion(self, assertion: str, state, audiences: set[str]) -> dict:
        try:
            header = tokens.header_of(assertion)
            claimed = tokens.unverified_claims(assertion)
        except OperationOutcomeError:
            raise invalid_client("The client assertion is not a signed JWT") from None
        alg = header.get("alg")
        if alg not in ALGS:
            raise invalid_client(f"Client assertions must be signed with {' or '.join(ALGS)}, not {alg}")
        client_id = claimed.get("iss")
        client = await accounts.get_client(state, client_id) if isinstance(client_id, str) else None
        if client is None:
            raise invalid_client("The client assertion's issuer is not a registered client")
        if client["type"] != "confidential-asymmetric":
            raise invalid_client(f"Client {client_id} has no registered keys (it is {client['type']})")
        if header.get("jku") and header["jku"] != client.get("jwks_url"):
            raise invalid_client("The client assertion's jku is not the client's registered jwks_url")
        key = await self._key(client, header.get("kid"))
        try:
            claims = tokens.verify_signature(assertion, key, [alg])
        except OperationOutcomeError:
            raise invalid_client("The client assertion's signature is not valid") from None
        _check_claims(claims, client_id, audiences)
        added = await state.add("assertion", f"{client_id} {claims['jti']}", {"exp": claims["exp"]},
                                expires=claims["exp"] + tokens.LEEWAY)
        if not added:
            raise invalid_client("The client assertion was already used (jti)")
        return client

    async def _key(self, client: dict, kid) -> jwk.JWK:
        if not isinstance(kid, str) or not kid:
            raise invalid_client("The client assertion's header has no kid")
        if "jwks" in client:
            keyset = jwk.JWKSet.from_json(json.dumps(client["jwks"]))
            key = keyset.get_key(kid)
        else:
            key = (await self._fetched(client["jwks_url"], refetch=False)).get_key(kid)
            if key is None:
                key = (await self._fetched(client["jwks_url"], refetch=True)).get_key(kid)
        if key is None:
            raise invalid_client(f"The client assertion's kid '{kid}' is not among the client's registered keys")
        return key

    async def _fetched(self, url: str, refetch: bool) -> jwk.JWKSet:
        async with self._locks.setdefault(url, asyncio.Lock()):
            now = time.monotonic()
            cached = self._jwks.get(url)
            if cached and now - cached[1] < (JWKS_REFETCH if refetch else JWKS_TTL):
                return cached[0]
            try:
                async with httpx.AsyncClient(timeout=self.fetch_timeout, follow_redirects=False) as http:
                    response = await http.get(url, headers={"Accept": "application/json"})
                if response.status_code != 200 or len(response.content) > MAX_JWKS_BYTES:
                    raise ValueError(f"HTTP {response.status_code}")
                keyset = jwk.JWKSet.from_json(response.text)
            except Exception as exc:  # network errors, bad JSON, bad keys: the client cannot be checked
                if cached:
                    return cached[0]
                raise invalid_client(f"The client's jwks_url could not be read ({type(exc).__name__})") from None
            self._jwks[url] = (keyset, now)
            return keyset


def _check_claims(claims: dict, client_id: str, audiences: set[str]) -> None:
    if claims.get("sub") != client_id:
        raise invalid_client("The client assertion's sub must equal its iss (the client_id)")
    aud = claims.get("aud")
    given = set(aud) if isinstance(aud, list) else {aud}
    if not given & audiences:
        raise invalid_client("The client assertion's aud must be the token endpoint URL")
    exp = claims.get("exp")
    now = time.time()
    if not isinstance(exp, (int, float)) or isinstance(exp, bool):
        raise invalid_client("The client assertion has no exp")
    if exp + tokens.LEEWAY < now:
        raise invalid_client("The client assertion has expired")
    if exp > now + MAX_ASSERTION_SECONDS + tokens.LEEWAY:
        raise invalid_client(f"The client assertion's exp is more than {MAX_ASSERTION_SECONDS} seconds away")
    nbf = claims.get("nbf")
    if isinstance(nbf, (int, float)) and nbf - tokens.LEEWAY > now:
        raise invalid_client("The client assertion is not valid yet (nbf)")
    if not isinstance(claims.get("jti"), str) or not claims["jti"]:
        raise invalid_client("The client assertion has no jti")


async def _secret(state, client_id: str, secret: str, basic: bool) -> dict:
    client = await accounts.get_client(state, client_id)
    hashed = client.get("secret_hash") if client and client["type"] == "confidential-symmetric" else None
    if not await asyncio.to_thread(accounts.verify_secret, secret, hashed):
        raise invalid_client("The client_id or client_secret is wrong", basic=basic)
    return client
