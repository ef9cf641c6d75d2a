"""Access tokens of an external OpenID Connect provider: the national identity system (RU-7).

Configured by ``external_issuer``, ``external_audience`` and ``external_jwks_url``. A token is
accepted when its signature checks against the provider's JWKS (fetched over HTTPS, cached,
fetched again when a token names an unknown key), its ``iss`` is the provider, its ``aud``
holds ``external_audience``, and it has not expired. The user is then matched by the SNILS in
claim ``external_snils_claim`` to a Practitioner (first) or Patient identifier
(``profiles.SNILS_SYSTEM``); no match, or several, is a 403 that says so. The principal gets
the token's SMART scopes when it carries some, else ``external_practitioner_scope`` or
``external_patient_scope``.
"""

from __future__ import annotations

import re
import time

import httpx
from jwcrypto import jwk

from fhir_server.auth import tokens
from fhir_server.auth.principal import Principal
from fhir_server.auth.scopes import parse
from fhir_server.errors import OperationOutcomeError, issue
from fhir_server.search.plan import parse_query
from profiles import SNILS_SYSTEM

ALGS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"]
REFETCH_AFTER = 30.0  # seconds between JWKS fetches caused by unknown key ids


def no_user(reason: str) -> OperationOutcomeError:
    header = f'Bearer realm="telemed", error="insufficient_scope", error_description="{reason}"'
    return OperationOutcomeError([issue("forbidden", reason)], status=403, headers={"WWW-Authenticate": header})


class ExternalProvider:
    def __init__(self, settings, store, transport: httpx.AsyncBaseTransport | None = None):
        self.settings = settings
        self.store = store
        self.issuer = settings.external_issuer
        self._keys: jwk.JWKSet | None = None
        self._fetched = 0.0
        self._transport = transport

    async def _jwks(self, kid: str | None) -> jwk.JWKSet:
        stale = self._keys is None or (kid and self._keys.get_key(kid) is None
                                       and time.monotonic() - self._fetched > REFETCH_AFTER)
        if stale:
            try:
                async with httpx.AsyncClient(timeout=10, transport=self._transport) as client:
                    r = await client.get(self.settings.external_jwks_url)
                    r.raise_for_status()
                self._keys = jwk.JWKSet.from_json(r.text)
            except (httpx.HTTPError, ValueError) as exc:
                if self._keys is None:
                    raise tokens.unauthorized(f"The identity provider's keys cannot be fetched ({exc})") from None
            self._fetched = time.monotonic()
        return self._keys

    async def principal(self, token: str, head: dict) -> Principal:
        if head.get("alg") not in ALGS:
            raise tokens.unauthorized(f"Identity provider tokens must be signed with one of {', '.join(ALGS)}")
        keys = await self._jwks(head.get("kid"))
        key = keys.get_key(head["kid"]) if head.get("kid") else None
        if key is None:
            raise tokens.unauthorized("The access token is signed with a key the identity provider does not publish")
        claims = tokens.verify_signature(token, key, [head["alg"]])
        tokens.check_times(claims)
        if claims.get("iss") != self.issuer:
            raise tokens.unauthorized("The access token was not issued by the identity provider (iss)")
        tokens.check_audience(claims, {self.settings.external_audience})
        snils = claims.get(self.settings.external_snils_claim)
        if not isinstance(snils, str) or not snils.strip():
            raise no_user(f"The identity provider's token has no SNILS claim '{self.settings.external_snils_claim}'")
        user = await self._match(normalise_snils(snils))
        scope = claims.get("scope")
        smart = parse(scope if isinstance(scope, str) else "")
        if not smart.grants:
            default = (self.settings.external_patient_scope if user.startswith("Patient/")
                       else self.settings.external_practitioner_scope)
            scope = f"{default} openid fhirUser"
        return Principal.from_claims({**claims, "scope": scope, "fhirUser": user, "client_id": claims.get("azp") or
                                      claims.get("client_id") or "external",
                                      "jti": claims.get("jti") or f"external:{claims.get('sub')}:{claims.get('iat')}"})

    async def _match(self, snils: str) -> str:
        forms = ",".join(f"{SNILS_SYSTEM}|{v}" for v in dict.fromkeys([snils, format_snils(snils)]))
        for type in ("Practitioner", "Patient"):
            page = await self.store.search(parse_query(type, [("identifier", forms)], strict=True),
                                           count=2, cursor=None, total=False)
            if len(page.entries) > 1:
                raise no_user(f"More than one {type} has SNILS {format_snils(snils)}; the record must be corrected")
            if page.entries:
                return f"{type}/{page.entries[0].id}"
        raise no_user(f"No Practitioner or Patient is registered with SNILS {format_snils(snils)}")


def normalise_snils(value: str) -> str:
    """SNILS as its 11 digits (``123-456-789 01`` -> ``12345678901``)."""
    return re.sub(r"\D", "", value)


def format_snils(digits: str) -> str:
    """The printed form ``123-456-789 01`` (how SNILS is often recorded)."""
    if len(digits) != 11:
        return digits
    return f"{digits[0:3]}-{digits[3:6]}-{digits[6:9]} {digits[9:11]}"
