"""Access tokens of the local authority: signed JWTs (RFC 9068 shape), and their checks.

Claims: ``iss`` (the local issuer), ``aud`` (the FHIR base URL), ``sub``, ``client_id``,
``scope``, ``iat``, ``nbf``, ``exp``, ``jti`` and the launch context: ``fhirUser``,
``patient``, ``encounter``, ``fhirContext`` (SMART 2.x). Anything that fails a check is a 401
with a ``WWW-Authenticate: Bearer error="invalid_token"`` header (RFC 6750).
"""

from __future__ import annotations

import json
import time
import uuid

from jwcrypto import jws, jwt
from jwcrypto.common import JWException, json_decode

from fhir_server.auth.keys import ALG, KeyRing
from fhir_server.errors import OperationOutcomeError, issue

LEEWAY = 30  # seconds of clock skew tolerated on exp / nbf / iat


def unauthorized(reason: str, error: str = "invalid_token") -> OperationOutcomeError:
    description = reason.replace('"', "'")
    header = f'Bearer realm="telemed", error="{error}", error_description="{description}"' if error \
        else 'Bearer realm="telemed"'
    code = "expired" if "expired" in reason else "login"
    return OperationOutcomeError([issue(code, reason)], status=401, headers={"WWW-Authenticate": header})


def insufficient_scope(reason: str, needed: str) -> OperationOutcomeError:
    description = reason.replace('"', "'")
    header = f'Bearer realm="telemed", error="insufficient_scope", error_description="{description}", scope="{needed}"'
    return OperationOutcomeError([issue("forbidden", reason)], status=403, headers={"WWW-Authenticate": header})


def mint(keys: KeyRing, claims: dict, lifetime: int, typ: str = "at+jwt") -> tuple[str, dict]:
    """Sign ``claims`` (plus iat/nbf/exp/jti) with the active key; the token and its claims."""
    now = int(time.time())
    full = {"iat": now, "nbf": now, "exp": now + lifetime, "jti": uuid.uuid4().hex, **claims}
    key = keys.active
    token = jwt.JWT(header={"alg": ALG, "kid": key.get("kid"), "typ": typ}, claims=full)
    token.make_signed_token(key)
    return token.serialize(), full


def header_of(token: str) -> dict:
    """The unverified JOSE header; 401 when the token is no compact JWS."""
    parts = token.split(".")
    if len(parts) != 3:
        raise unauthorized("The access token is not a signed JWT")
    try:
        header = json_decode(jws.base64url_decode(parts[0]))
    except (ValueError, JWException, UnicodeDecodeError):
        raise unauthorized("The access token header is not valid JSON") from None
    if not isinstance(header, dict):
        raise unauthorized("The access token header is not a JSON object")
    return header


def unverified_claims(token: str) -> dict:
    try:
        claims = json_decode(jws.base64url_decode(token.split(".")[1]))
    except (ValueError, JWException, UnicodeDecodeError, IndexError):
        raise unauthorized("The access token payload is not valid JSON") from None
    if not isinstance(claims, dict):
        raise unauthorized("The access token payload is not a JSON object")
    return claims


def verify_signature(token: str, key, algs: list[str]) -> dict:
    """Check the signature with ``key`` accepting only ``algs``; the claims."""
    try:
        checked = jwt.JWT(jwt=token, key=key, algs=algs, check_claims=False, expected_type="JWS")
    except Exception:  # jwcrypto raises several unrelated types for bad signatures and algorithms
        raise unauthorized("The access token signature is not valid") from None
    claims = json.loads(checked.claims)
    if not isinstance(claims, dict):
        raise unauthorized("The access token payload is not a JSON object")
    return claims


def check_times(claims: dict, now: float | None = None) -> None:
    now = time.time() if now is None else now
    exp = claims.get("exp")
    if not isinstance(exp, (int, float)):
        raise unauthorized("The access token has no expiry (exp)")
    if exp + LEEWAY < now:
        raise unauthorized("The access token has expired")
    nbf = claims.get("nbf", claims.get("iat"))
    if isinstance(nbf, (int, float)) and nbf - LEEWAY > now:
        raise unauthorized("The access token is not valid yet (nbf)")


def check_audience(claims: dict, audiences: set[str]) -> None:
    aud = claims.get("aud")
    given = set(aud) if isinstance(aud, list) else {aud}
    if not given & {a.rstrip("/") for a in audiences} and not given & audiences:
        raise unauthorized("The access token is not meant for this server (aud)")


def system_token(keys: KeyRing, settings, fhir_base: str, scope: str = "system/*.*", lifetime: int | None = None,
                 subject: str = "telemed-cli") -> str:
    """A token of the local authority for a trusted local caller (CLI, in-process loads, tests):
    ``iss`` is the configured issuer or ``fhir_base``, ``aud`` is ``fhir_base``."""
    base = (settings.base_url or fhir_base).rstrip("/")
    claims = {"iss": (settings.issuer or base).rstrip("/"), "aud": base, "sub": subject, "client_id": subject,
              "scope": scope}
    return mint(keys, claims, lifetime or settings.access_token_seconds)[0]
