"""The OAuth 2.0 wire of the local authorization server: its endpoint URLs, form-encoded request
bodies, JSON answers and RFC 6749 errors (``{"error": ..., "error_description": ...}``).

Endpoints live beside the FHIR base: with the FHIR base ``https://host/fhir`` they are
``https://host/auth/{authorize,token,introspect,revoke,jwks}``.
"""

from __future__ import annotations

import hashlib
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.errors import OperationOutcomeError
from fhir_server.http import base_url, json_response, read_body

FORM = "application/x-www-form-urlencoded"
MAX_FORM_BYTES = 64 * 1024
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class OAuthError(Exception):
    """An OAuth error answer (RFC 6749 5.2, RFC 7009, RFC 7662)."""

    def __init__(self, error: str, description: str, status: int = 400, headers: dict | None = None):
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status
        self.headers = headers or {}

    def response(self) -> Response:
        return oauth_json({"error": self.error, "error_description": self.description}, self.status, self.headers)


def invalid_request(description: str) -> OAuthError:
    return OAuthError("invalid_request", description)


def invalid_client(description: str, basic: bool = False) -> OAuthError:
    headers = {"WWW-Authenticate": 'Basic realm="telemed"'} if basic else None
    return OAuthError("invalid_client", description, 401, headers)


def invalid_grant(description: str) -> OAuthError:
    return OAuthError("invalid_grant", description)


def oauth_json(body: dict, status: int = 200, headers: dict | None = None) -> Response:
    return json_response(body, status, {**NO_STORE, **(headers or {})}, media_type="application/json")


def fhir_base(request: Request, settings) -> str:
    """The FHIR base URL: the ``aud`` of our access tokens."""
    return base_url(request, settings.base_url)


def authority_root(request: Request, settings) -> str:
    """Where ``/auth/...`` is served: the FHIR base without its ``/fhir`` segment."""
    base = fhir_base(request, settings)
    if base.endswith("/fhir"):
        return base.removesuffix("/fhir")
    return str(request.base_url).rstrip("/")


def endpoint(request: Request, settings, name: str) -> str:
    """The absolute URL of one endpoint: ``authorize``, ``token``, ``introspect``, ``revoke``, ``jwks``."""
    return f"{authority_root(request, settings)}/auth/{name}"


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def single_values(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """Parameters as a dict; a parameter sent twice is refused (RFC 6749 3.1, 3.2)."""
    out: dict[str, str] = {}
    for name, value in pairs:
        if name in out:
            raise invalid_request(f"Parameter '{name}' is given more than once")
        out[name] = value
    return out


async def read_form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (parsed with urllib)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != FORM:
        raise invalid_request(f"Send the parameters as {FORM}, not '{ctype or '(no content type)'}'")
    try:
        body = await read_body(request, MAX_FORM_BYTES)
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=100)
    except OperationOutcomeError:
        raise invalid_request(f"The request body is larger than {MAX_FORM_BYTES} bytes") from None
    except ValueError:  # not UTF-8, or too many fields
        raise invalid_request("The request body is not a valid form") from None
    return single_values(pairs)


def query_values(request: Request) -> dict[str, str]:
    return single_values(list(request.query_params.multi_items()))


def digest(secret: str) -> str:
    """The key a one-time code or refresh token is stored under: its SHA-256, never the token."""
    return hashlib.sha256(secret.encode()).hexdigest()
