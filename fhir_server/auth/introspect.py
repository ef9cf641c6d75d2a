"""``POST /auth/introspect`` (RFC 7662): whether a token is active, and what it grants.

The caller is a registered confidential client (any of its authentication methods) or holds an
admin access token (``Authorization: Bearer``, ``system/*.*``). ``token`` is an access token
(checked exactly as the FHIR endpoints check it: signature, times, issuer, audience,
revocation) or a refresh token of this server; ``token_type_hint`` only changes the order of
the lookups. Anything else is ``{"active": false}``.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.auth import grants
from fhir_server.auth.client_auth import ClientAuth
from fhir_server.auth.oauth import OAuthError, invalid_request, oauth_json, read_form
from fhir_server.errors import OperationOutcomeError

ACCESS_CLAIMS = ("scope", "client_id", "sub", "exp", "iat", "nbf", "iss", "aud", "jti", "fhirUser", "patient",
                 "encounter", "fhirContext")


class Introspect:
    def __init__(self, clients: ClientAuth):
        self.clients = clients

    async def handle(self, request: Request, svc) -> Response:
        try:
            form = await read_form(request)
            await self.clients.caller(request, form, svc, "introspect", confidential=True)
            token = form.get("token")
            if not token:
                raise invalid_request("token is required")
            lookups = [_refresh, _access] if form.get("token_type_hint") == "refresh_token" else [_access, _refresh]
            for lookup in lookups:
                found = await lookup(request, svc, token)
                if found is not None:
                    return oauth_json({"active": True, **found})
            return oauth_json({"active": False})
        except OAuthError as exc:
            return exc.response()


async def _access(request: Request, svc, token: str) -> dict | None:
    try:
        who = await svc.bearer.verify(request, token)
    except OperationOutcomeError:
        return None
    out = {k: who.claims[k] for k in ACCESS_CLAIMS if k in who.claims}
    return {**out, "token_type": "Bearer"}


async def _refresh(request: Request, svc, token: str) -> dict | None:
    doc = await grants.find_refresh(svc, token)
    if doc is None:
        return None
    out = {"scope": doc["scope"], "client_id": doc["client_id"], "sub": doc["sub"], "exp": int(doc["expires"]),
           "token_type": "refresh_token"}
    if doc.get("fhirUser"):
        out["fhirUser"] = doc["fhirUser"]
    return out
