"""``POST /auth/token`` (form-urlencoded): the authorization_code, refresh_token and
client_credentials grants (RFC 6749, RFC 7636, SMART App Launch 2.x and Backend Services).

Errors are RFC 6749 5.2 JSON with ``Cache-Control: no-store``: 400 (``invalid_request``,
``invalid_grant``, ``invalid_scope``, ``unauthorized_client``, ``unsupported_grant_type``), 401
(``invalid_client``), 429 (``slow_down``, with ``Retry-After``) past ``token_rate_limit``
requests a minute for one (client_id, client IP).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.auth import grants, scopes
from fhir_server.auth.client_auth import Authenticated, ClientAuth, claimed_client_id
from fhir_server.auth.issue import token_response
from fhir_server.auth.oauth import OAuthError, client_ip, endpoint, invalid_grant, invalid_request, read_form
from fhir_server.auth.ratelimit import SlidingWindow

_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")


class TokenEndpoint:
    def __init__(self, clients: ClientAuth, limiter: SlidingWindow):
        self.clients = clients
        self.limiter = limiter

    async def handle(self, request: Request, svc) -> Response:
        try:
            form = await read_form(request)
            wait = self.limiter.hit((claimed_client_id(request, form), client_ip(request)))
            if wait is not None:
                raise OAuthError("slow_down", "Too many token requests for this client from this address",
                                 429, {"Retry-After": str(math.ceil(wait))})
            grant_type = form.get("grant_type")
            if grant_type not in ("authorization_code", "refresh_token", "client_credentials"):
                raise OAuthError("unsupported_grant_type",
                                 "grant_type must be authorization_code, refresh_token or client_credentials")
            token_url = endpoint(request, svc.settings, "token")
            caller = await self.clients.authenticate(request, form, svc, {token_url})
            if grant_type not in caller.client["grant_types"]:
                raise OAuthError("unauthorized_client", f"This client is not registered for the {grant_type} grant")
            if grant_type == "authorization_code":
                return await _authorization_code(request, svc, caller, form)
            if grant_type == "refresh_token":
                return await _refresh_token(request, svc, caller, form)
            return await _client_credentials(request, svc, caller, form)
        except OAuthError as exc:
            return exc.response()


async def _authorization_code(request: Request, svc, caller: Authenticated, form: dict) -> Response:
    for name in ("code", "redirect_uri", "code_verifier"):
        if not form.get(name):
            raise invalid_request(f"{name} is required")
    verifier = form["code_verifier"]
    if not _VERIFIER.match(verifier):
        raise invalid_request("code_verifier must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~")
    auth = await grants.redeem_code(svc, form["code"])
    if auth["client_id"] != caller.client_id:
        await grants.revoke_grant(svc, auth["grant"])
        raise invalid_grant("The authorization code was issued to another client")
    if auth["redirect_uri"] != form["redirect_uri"]:
        raise invalid_grant("redirect_uri differs from the one of the authorization request")
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    if not hmac.compare_digest(challenge, auth["code_challenge"]):
        raise invalid_grant("code_verifier does not match the code_challenge (PKCE)")
    auth = {k: v for k, v in auth.items() if k not in ("redirect_uri", "code_challenge")}
    return await token_response(request, svc, caller.client, auth)


async def _refresh_token(request: Request, svc, caller: Authenticated, form: dict) -> Response:
    if not form.get("refresh_token"):
        raise invalid_request("refresh_token is required")
    asked = scopes.parse(form.get("scope")).text
    known = await grants.find_refresh(svc, form["refresh_token"])
    if asked and known and scopes.narrow(asked, scopes.parse(known["scope"])) != asked:
        raise OAuthError("invalid_scope", "A refresh can only ask for scopes of the original grant")
    auth = await grants.rotate_refresh(svc, form["refresh_token"])
    if auth["client_id"] != caller.client_id:
        await grants.revoke_grant(svc, auth["grant"])
        raise invalid_grant("The refresh token was issued to another client")
    auth = {k: v for k, v in auth.items() if k != "expires"}
    # The new refresh token keeps the grant's scope (RFC 6749 6); the access token may be narrower.
    narrower = scopes.narrow(asked, scopes.parse(auth["scope"])) if asked else None
    return await token_response(request, svc, caller.client, auth, narrower)


async def _client_credentials(request: Request, svc, caller: Authenticated, form: dict) -> Response:
    if not caller.confidential:
        raise OAuthError("unauthorized_client", "client_credentials needs an authenticated confidential client")
    if not form.get("scope"):
        raise OAuthError("invalid_scope", "scope is required (e.g. system/Observation.rs)")
    granted = scopes.parse(scopes.narrow(form["scope"], scopes.parse(caller.client["scope"])))
    system = " ".join(s for s in granted.text.split() if (g := scopes.parse_grant(s)) and g.context == "system")
    if not system:
        raise OAuthError("invalid_scope", "None of the requested system/ scopes is registered for this client")
    auth = {"client_id": caller.client_id, "sub": caller.client_id, "scope": system}
    return await token_response(request, svc, caller.client, auth)
