"""The token response (SMART App Launch 2.x, RFC 6749 5.1): an access token, and when granted an
OpenID Connect ``id_token``, a rotating refresh token and the launch context.

An authorization (kept in codes and refresh tokens) is a dict: ``client_id``, ``sub``,
``fhirUser`` ("Practitioner/1"), ``scope`` (granted), ``context`` (``patient``, ``encounter``,
``fhirContext``, ``need_patient_banner``), ``nonce``, ``grant`` (the grant record id) and, for
``online_access``, ``deadline`` (the end of the login session).
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response

from fhir_server import audit
from fhir_server.auth import grants, scopes, tokens
from fhir_server.auth.oauth import fhir_base, oauth_json

# ``online_access`` refresh tokens end with the login session: this long after the login.
ONLINE_ACCESS_SECONDS = 8 * 3600
CONTEXT_CLAIMS = ("patient", "encounter", "fhirContext")


def absolute(request: Request, svc, reference: str) -> str:
    return reference if "://" in reference else f"{fhir_base(request, svc.settings)}/{reference}"


def wants_refresh(client: dict, scope: str) -> bool:
    granted = scopes.parse(scope).other
    return "refresh_token" in client.get("grant_types", ()) and bool({"offline_access", "online_access"} & granted)


async def token_response(request: Request, svc, client: dict, auth: dict, scope: str | None = None) -> Response:
    """The response for ``auth``; ``scope`` narrows the access token (a refresh asking for less)."""
    settings = svc.settings
    scope = scope or auth["scope"]
    context = auth.get("context") or {}
    claims = {"iss": svc.bearer.issuer(request), "aud": fhir_base(request, settings), "sub": auth["sub"],
              "client_id": auth["client_id"], "scope": scope}
    if auth.get("fhirUser"):
        claims["fhirUser"] = absolute(request, svc, auth["fhirUser"])
    claims.update({k: context[k] for k in CONTEXT_CLAIMS if context.get(k)})
    access, full = tokens.mint(svc.keys, claims, settings.access_token_seconds)
    svc.auditor.record_event(audit.authentication("token", auth.get("fhirUser") or auth["sub"], auth["client_id"],
                                                  audit.address(request), "0", f"scope: {scope}"))
    body = {"access_token": access, "token_type": "Bearer", "expires_in": settings.access_token_seconds,
            "scope": scope}
    body.update({k: context[k] for k in CONTEXT_CLAIMS if context.get(k)})
    if context.get("patient"):
        body["need_patient_banner"] = context.get("need_patient_banner", True)
    if context.get("intent"):
        body["intent"] = context["intent"]
    id_token = _id_token(request, svc, {**auth, "scope": scope})
    if id_token:
        body["id_token"] = id_token
    refresh, refresh_expires = None, None
    if auth.get("grant") and wants_refresh(client, auth["scope"]):
        now = time.time()
        refresh_expires = now + settings.refresh_token_seconds
        if "offline_access" not in scopes.parse(auth["scope"]).other:
            refresh_expires = min(refresh_expires, auth.get("deadline") or now + ONLINE_ACCESS_SECONDS)
        if refresh_expires > now:
            kept = {k: v for k, v in auth.items() if k != "nonce"}
            refresh = body["refresh_token"] = await grants.put_refresh(svc, kept, refresh_expires)
    if auth.get("grant"):
        await grants.record(svc, auth["grant"], auth["client_id"], auth["sub"], full["jti"], full["exp"],
                            refresh, refresh_expires)
    return oauth_json(body)


def _id_token(request: Request, svc, auth: dict) -> str | None:
    """OpenID Connect: with ``openid`` and ``fhirUser`` or ``profile`` granted to a user login."""
    granted = scopes.parse(auth["scope"]).other
    if "openid" not in granted or not ({"fhirUser", "profile"} & granted) or not auth.get("fhirUser"):
        return None
    claims = {"iss": svc.bearer.issuer(request), "sub": auth["sub"], "aud": auth["client_id"],
              "fhirUser": absolute(request, svc, auth["fhirUser"])}
    if auth.get("auth_time"):
        claims["auth_time"] = auth["auth_time"]
    if auth.get("nonce"):
        claims["nonce"] = auth["nonce"]
    token, _ = tokens.mint(svc.keys, claims, svc.settings.access_token_seconds, typ="JWT")
    return token
