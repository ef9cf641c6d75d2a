"""Discovery: ``[base]/.well-known/smart-configuration`` (SMART App Launch 2.x),
``[base]/.well-known/openid-configuration`` (OpenID Connect Discovery) and the authority's
public keys at ``/auth/jwks``. None of them needs a token.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.auth.client_auth import ALGS
from fhir_server.auth.oauth import endpoint
from fhir_server.auth.keys import ALG
from fhir_server.http import json_response

GRANT_TYPES = ["authorization_code", "refresh_token", "client_credentials"]
AUTH_METHODS = ["private_key_jwt", "client_secret_basic", "client_secret_post", "none"]
CAPABILITIES = [
    "launch-ehr", "launch-standalone", "authorize-post",
    "client-public", "client-confidential-symmetric", "client-confidential-asymmetric",
    "context-ehr-patient", "context-ehr-encounter", "context-standalone-patient",
    "permission-offline", "permission-online", "permission-patient", "permission-user",
    "permission-v1", "permission-v2", "sso-openid-connect",
]
SCOPES = [
    "openid", "fhirUser", "profile", "launch", "launch/patient", "launch/encounter", "offline_access",
    "online_access",
    "patient/*.cruds", "patient/*.rs", "user/*.cruds", "user/*.rs", "system/*.cruds", "system/*.rs",
    "patient/*.read", "patient/*.write", "patient/*.*", "user/*.read", "user/*.write", "user/*.*",
    "system/*.read", "system/*.write", "system/*.*",
]
CACHE = {"Cache-Control": "public, max-age=300"}


def _urls(request: Request, svc) -> dict:
    return {name: endpoint(request, svc.settings, name) for name in ("authorize", "token", "introspect", "revoke", "jwks")}


def _endpoints(request: Request, svc) -> dict:
    """What both discovery documents say: the issuer and the endpoints."""
    urls = _urls(request, svc)
    return {
        "issuer": svc.bearer.issuer(request),
        "jwks_uri": urls["jwks"],
        "authorization_endpoint": urls["authorize"],
        "token_endpoint": urls["token"],
        "introspection_endpoint": urls["introspect"],
        "revocation_endpoint": urls["revoke"],
    }


async def smart_configuration(request: Request, svc) -> Response:
    return json_response({
        **_endpoints(request, svc),
        "grant_types_supported": GRANT_TYPES,
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": list(ALGS),
        "scopes_supported": SCOPES,
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "capabilities": CAPABILITIES,
    }, headers=CACHE, media_type="application/json")


async def openid_configuration(request: Request, svc) -> Response:
    return json_response({
        **_endpoints(request, svc),
        "response_types_supported": ["code"],
        "grant_types_supported": GRANT_TYPES,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [ALG],
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": list(ALGS),
        "scopes_supported": ["openid", "fhirUser", "profile"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "fhirUser"],
        "code_challenge_methods_supported": ["S256"],
    }, headers=CACHE, media_type="application/json")


async def jwks(request: Request, svc) -> Response:
    return json_response(svc.keys.jwks(), headers=CACHE, media_type="application/jwk-set+json")


def capability_security(request: Request, svc) -> dict:
    """``CapabilityStatement.rest.security`` naming the SMART endpoints (the ``oauth-uris``
    extension that clients such as Python ``fhirclient`` 4.x read instead of the .well-known)."""
    urls = _urls(request, svc)
    oauth = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
    return {
        "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                 "code": "SMART-on-FHIR"}], "text": "OAuth2 using SMART-on-FHIR profile"}],
        "extension": [{"url": oauth, "extension": [
            {"url": "authorize", "valueUri": urls["authorize"]},
            {"url": "token", "valueUri": urls["token"]},
            {"url": "introspect", "valueUri": urls["introspect"]},
            {"url": "revoke", "valueUri": urls["revoke"]},
        ]}],
    }
