"""Every FHIR request's access token, checked: ``Authorization: Bearer <JWT>``.

Tokens of the local authority are checked against its keys; tokens whose ``iss`` is the
configured external OpenID Connect provider are checked by ``auth.external``. A checked token
is remembered until it expires, for at most ``RECHECK`` seconds before its revocation is looked
up again, so a revocation by another server process takes effect within that time (and at once
in the process that revoked it).
"""

from __future__ import annotations

import time
from collections import OrderedDict

from starlette.requests import Request

from fhir_server.auth import tokens
from fhir_server.auth.keys import ALG, KeyRing
from fhir_server.auth.principal import Principal
from fhir_server.auth.state import AuthState
from fhir_server.http import base_url, header

RECHECK = 2.0
CACHE_SIZE = 10_000


class Bearer:
    def __init__(self, keys: KeyRing, state: AuthState, settings, external=None):
        self.keys = keys
        self.state = state
        self.settings = settings
        self.external = external  # auth.external.ExternalProvider or None
        self._cache: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._revoked: set[str] = set()

    def issuer(self, request: Request) -> str:
        """The local authority's issuer: the configured one, else the FHIR base URL."""
        return (self.settings.issuer or base_url(request, self.settings.base_url)).rstrip("/")

    def audiences(self, request: Request) -> set[str]:
        return {base_url(request, self.settings.base_url)}

    async def principal(self, request: Request) -> Principal:
        """The caller, or 401 with ``WWW-Authenticate``."""
        known = request.scope.get("telemed.principal")
        if known is not None:
            return known
        raw = header(request, b"authorization")
        if not raw:
            raise tokens.unauthorized("This server requires an access token (Authorization: Bearer ...)", error="")
        scheme, _, token = raw.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise tokens.unauthorized("Only Bearer access tokens are accepted", error="invalid_request")
        now = time.time()
        hit = self._cache.get(token)
        if hit is not None and hit[1] > now and hit[0].token_id not in self._revoked:
            who = hit[0]
        else:
            who = await self._check(request, token, now)
            self._remember(token, who, now)
        request.scope["telemed.principal"] = who
        return who

    async def _check(self, request: Request, token: str, now: float) -> Principal:
        head = tokens.header_of(token)
        claims = tokens.unverified_claims(token)
        if self.external is not None and claims.get("iss") == self.external.issuer:
            return await self.external.principal(token, head)
        if head.get("alg") != ALG:
            raise tokens.unauthorized(f"Access tokens of this server are signed with {ALG}, not {head.get('alg')}")
        key = self.keys.find(head.get("kid"))
        if key is None:
            raise tokens.unauthorized("The access token is signed with an unknown key (kid)")
        claims = tokens.verify_signature(token, key, [ALG])
        tokens.check_times(claims, now)
        if claims.get("iss") != self.issuer(request):
            raise tokens.unauthorized("The access token was not issued by this server (iss)")
        tokens.check_audience(claims, self.audiences(request))
        jti = claims.get("jti")
        if not isinstance(jti, str) or jti in self._revoked or await self.state.get("revoked", jti) is not None:
            raise tokens.unauthorized("The access token has been revoked")
        return Principal.from_claims(claims)

    async def verify(self, request: Request, token: str) -> Principal:
        """Check one token given in a request's body (introspection, revocation) exactly as
        ``principal`` checks the header's; 401 OperationOutcomeError when it is not valid."""
        return await self._check(request, token, time.time())

    def _remember(self, token: str, who: Principal, now: float) -> None:
        self._cache[token] = (who, min(who.expires + tokens.LEEWAY, now + RECHECK))
        self._cache.move_to_end(token)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)

    async def revoke(self, jti: str, expires: float) -> None:
        """Revoke an access token by its ``jti`` until it would have expired anyway."""
        self._revoked.add(jti)
        await self.state.put("revoked", jti, {"jti": jti}, expires=expires + tokens.LEEWAY)
