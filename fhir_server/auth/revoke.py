"""``POST /auth/revoke`` (RFC 7009): revoke a refresh token or an access token.

The caller is the client the token was issued to (public clients by ``client_id``, confidential
ones authenticated) or an admin (``Authorization: Bearer`` with ``system/*.*``), who may revoke
any token. Revoking a refresh token revokes its whole grant: the refresh token and every access
token issued under it. Revoking an access token revokes its ``jti`` until it expires (the FHIR
endpoints answer 401 from then on). An unknown, expired or already revoked token is answered
200 like a revoked one; a token of another client is refused (``unauthorized_client``).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.auth import grants
from fhir_server.auth.client_auth import ClientAuth
from fhir_server.auth.oauth import OAuthError, invalid_request, oauth_json, read_form
from fhir_server.errors import OperationOutcomeError


class Revoke:
    def __init__(self, clients: ClientAuth):
        self.clients = clients

    async def handle(self, request: Request, svc) -> Response:
        try:
            form = await read_form(request)
            caller = await self.clients.caller(request, form, svc, "revoke", confidential=False)
            token = form.get("token")
            if not token:
                raise invalid_request("token is required")
            client_id = caller.client_id if caller is not None else None
            if form.get("token_type_hint") == "access_token":
                await _access(request, svc, token, client_id) or await _refresh(svc, token, client_id)
            else:
                await _refresh(svc, token, client_id) or await _access(request, svc, token, client_id)
            return oauth_json({})
        except OAuthError as exc:
            return exc.response()


def _owned(owner: str, client_id: str | None) -> None:
    if client_id is not None and owner != client_id:
        raise OAuthError("unauthorized_client", "The token was not issued to this client")


async def _refresh(svc, token: str, client_id: str | None) -> bool:
    doc = await grants.find_refresh(svc, token)
    if doc is None:
        return False
    _owned(doc["client_id"], client_id)
    await grants.revoke_grant(svc, doc["grant"])
    return True


async def _access(request: Request, svc, token: str, client_id: str | None) -> bool:
    try:
        who = await svc.bearer.verify(request, token)
    except OperationOutcomeError:
        return False
    if not who.token_id or who.issuer != svc.bearer.issuer(request):
        return False  # not one of ours (an external provider's tokens are revoked there)
    _owned(who.client_id, client_id)
    await svc.bearer.revoke(who.token_id, who.expires)
    return True
