"""``GET|POST /auth/authorize``: the authorization code flow with PKCE (RFC 6749 4.1, RFC 7636,
SMART App Launch 2.x).

1. The app's request names a registered client and one of its registered ``redirect_uri``s
   exactly; otherwise an HTML 400 page (never a redirect to an unchecked URI).
2. The rest is checked next; a problem is sent back to the app as ``redirect_uri?error=...``:
   ``response_type=code``, ``state``, PKCE with ``code_challenge_method=S256`` (``plain`` and a
   missing challenge are refused), ``aud`` = the FHIR base URL, scopes (what was asked for and
   the client is registered for), ``launch`` (an EHR launch context from ``POST /admin/launch``).
3. The login and consent form posts the request back with ``username``, ``password``,
   ``decision`` (allow / deny) and, for a practitioner's standalone ``launch/patient``, ``patient``
   (a Patient user gets their own patient; other users cannot make a standalone patient launch).
4. On success a one-time code is sent to the app: ``redirect_uri?code=...&state=...``.

Login attempts are rate limited per (client_id, IP) like the token endpoint.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from fhir_server import audit
from fhir_server.auth import accounts, grants, launch, login_page, scopes
from fhir_server.auth.issue import ONLINE_ACCESS_SECONDS
from fhir_server.auth.oauth import OAuthError, client_ip, endpoint, fhir_base, query_values, read_form
from fhir_server.auth.ratelimit import SlidingWindow

REQUEST_PARAMS = ("response_type", "client_id", "redirect_uri", "scope", "state", "aud", "code_challenge",
                  "code_challenge_method", "launch", "nonce")
PICKERS = ("Practitioner", "PractitionerRole")  # users who choose the patient of a standalone launch
_S256_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")
_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


@dataclass(frozen=True, slots=True)
class Pending:
    """A checked authorization request, waiting for the user's login."""

    client: dict
    params: dict[str, str]  # the authorization request's parameters, posted back by the form
    scope: str  # what may be granted
    context: dict | None  # the EHR launch context
    ask_patient: bool  # a standalone launch/patient: a practitioner picks the patient


class Authorize:
    def __init__(self, logins: SlidingWindow):
        self.logins = logins

    async def handle(self, request: Request, svc) -> Response:
        try:
            params = query_values(request) if request.method == "GET" else await read_form(request)
        except OAuthError as exc:
            return login_page.error_page(exc.description)
        client = await accounts.get_client(svc.auth_state, params.get("client_id", ""))
        if client is None:
            return login_page.error_page("Unknown client_id: the application is not registered with this server")
        redirect_uri = params.get("redirect_uri", "")
        if redirect_uri not in client["redirect_uris"]:
            return login_page.error_page("redirect_uri is missing or is not one registered for this application")
        try:
            pending = await _check(request, svc, client, params)
            if request.method != "POST" or "username" not in params:  # credentials only in a POST body
                return self._form(request, svc, pending)
            if params.get("decision") == "deny":
                raise OAuthError("access_denied", "The user denied the request")
            return await self._login(request, svc, pending, params)
        except OAuthError as exc:
            return _redirect(request, redirect_uri, {"error": exc.error, "error_description": exc.description,
                                                     "state": params.get("state")})

    def _form(self, request: Request, svc, pending: Pending, form: dict | None = None, error: str = "",
              status: int = 200) -> Response:
        form = form or {}
        return login_page.login_form(endpoint(request, svc.settings, "authorize"), pending.params,
                                     pending.client["name"], pending.scope, pending.ask_patient, error,
                                     form.get("username", ""), form.get("patient", ""), status)

    async def _login(self, request: Request, svc, pending: Pending, form: dict[str, str]) -> Response:
        params = pending.params
        wait = self.logins.hit((pending.client["client_id"], client_ip(request)))
        if wait is not None:
            return self._form(request, svc, pending, form, f"Too many attempts; try again in {int(wait) + 1} seconds", 429)
        user = await accounts.check_password(svc.auth_state, form.get("username", ""), form.get("password", ""))
        if user is None:
            svc.auditor.record_event(audit.authentication("login", form.get("username", ""), pending.client["client_id"],
                                                          client_ip(request), "4", "Wrong username or password"))
            return self._form(request, svc, pending, form, "Wrong username or password", 401)
        svc.auditor.record_event(audit.authentication("login", user["fhirUser"], pending.client["client_id"],
                                                      client_ip(request), "0"))
        own = user["fhirUser"].partition("/")[2] if user["fhirUser"].startswith("Patient/") else None
        context = pending.context
        if context is not None:
            if context.get("fhirUser") and context["fhirUser"] != user["fhirUser"]:
                raise OAuthError("access_denied", "This launch was made for another user")
            if own and context.get("patient") not in (None, own):
                raise OAuthError("access_denied", "A patient can only launch an app for themselves")
            context = {k: v for k, v in context.items() if k != "fhirUser"}
        elif pending.ask_patient:
            patient = own or form.get("patient", "").strip()
            if not own:
                if user["fhirUser"].partition("/")[0] not in PICKERS:
                    raise OAuthError("access_denied", "Only practitioners choose a patient in a standalone launch")
                problem = await _patient_problem(svc, patient)
                if problem:
                    return self._form(request, svc, pending, form, problem, 400)
            context = {"patient": patient, "need_patient_banner": True}
        now = time.time()
        code = await grants.put_code(svc, {
            "grant": grants.new_grant_id(), "client_id": pending.client["client_id"],
            "redirect_uri": params["redirect_uri"], "code_challenge": params["code_challenge"],
            "sub": user["id"], "fhirUser": user["fhirUser"], "scope": pending.scope, "context": context or {},
            "nonce": params.get("nonce"), "auth_time": int(now), "deadline": now + ONLINE_ACCESS_SECONDS,
        })
        return _redirect(request, params["redirect_uri"], {"code": code, "state": params.get("state")})


async def _check(request: Request, svc, client: dict, params: dict[str, str]) -> Pending:
    if params.get("response_type") != "code":
        raise OAuthError("unsupported_response_type", "response_type must be code")
    if "authorization_code" not in client["grant_types"]:
        raise OAuthError("unauthorized_client", "This client is not registered for the authorization_code grant")
    if not params.get("state"):
        raise OAuthError("invalid_request", "state is required")
    if params.get("code_challenge_method") != "S256":
        raise OAuthError("invalid_request", "PKCE is required with code_challenge_method=S256 (plain is not accepted)")
    if not _S256_CHALLENGE.match(params.get("code_challenge", "")):
        raise OAuthError("invalid_request", "code_challenge must be the base64url SHA-256 of the code_verifier (43 characters)")
    if params.get("aud", "").rstrip("/") != fhir_base(request, svc.settings):
        raise OAuthError("invalid_request", f"aud must be this server's FHIR base URL, {fhir_base(request, svc.settings)}")
    requested = params.get("scope", "")
    granted = scopes.parse(scopes.narrow(requested, scopes.parse(client["scope"])))
    other = set(granted.other)
    context = None
    if params.get("launch"):
        context = await launch.find(svc.auth_state, params["launch"])
        if context is None:
            raise OAuthError("invalid_request", "The launch parameter names no current EHR launch")
        if "launch" not in other:
            raise OAuthError("invalid_scope", "An EHR launch needs the launch scope")
    elif "launch" in requested.split():
        raise OAuthError("invalid_request", "The launch scope is for EHR launches: the launch parameter is missing")
    ask_patient = context is None and "launch/patient" in other
    if context is not None:
        other -= {s for s, key in (("launch/patient", "patient"), ("launch/encounter", "encounter")) if not context.get(key)}
    else:
        other.discard("launch/encounter")  # a standalone launch picks no encounter
    text = " ".join(s for s in granted.text.split() if s in other or scopes.parse_grant(s) is not None)
    if not text or not granted.grants and not other - {"launch", "launch/patient", "launch/encounter"}:
        raise OAuthError("invalid_scope", "None of the requested scopes can be granted to this client")
    kept = {k: params[k] for k in REQUEST_PARAMS if k in params}
    return Pending(client, kept, text, context, ask_patient)


async def _patient_problem(svc, patient: str) -> str:
    if not patient:
        return "Enter the id of the patient to open"
    if not _FHIR_ID.match(patient):
        return "A patient id has letters, digits, '-' and '.' only"
    stored = await svc.store.read("Patient", patient)
    if stored is None or stored.deleted:
        return f"There is no Patient {patient}"
    return ""


def _redirect(request: Request, redirect_uri: str, values: dict) -> Response:
    query = urlencode({k: v for k, v in values.items() if v is not None})
    location = f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}{query}"
    status = 302 if request.method == "GET" else 303
    return RedirectResponse(location, status, headers={"Cache-Control": "no-store"})
