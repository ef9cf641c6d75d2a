"""EHR launch contexts (SMART App Launch 2.x, "launch-ehr").

The EHR (or a portal acting as one) creates a context through the admin API
(``POST /admin/launch`` ``{"patient": "1", "encounter": "2", "fhirContext": [{"reference":
"ServiceRequest/3"}]}``) and opens the app with ``?iss=<FHIR base>&launch=<id>``. The app passes
``launch`` to ``/auth/authorize``; the token response then carries the context. A context may be
bound to one user (``fhirUser``): then only that user's login can use it. Contexts expire after
``LAUNCH_SECONDS`` and are kept in AuthState (kind ``launch``) until then, so an app may
re-authorize within that time.
"""

from __future__ import annotations

import re
import secrets
import time

from fhir_server.auth.state import AuthState

LAUNCH_SECONDS = 3600
_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_REFERENCE = re.compile(r"^[A-Z][A-Za-z]{0,63}/[A-Za-z0-9\-.]{1,64}$")
FHIR_CONTEXT_KEYS = ("reference", "canonical", "identifier", "type", "role")


def context_of(body: dict) -> dict:
    """A launch context from an admin request body; ValueError names what is wrong."""
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    unknown = set(body) - {"patient", "encounter", "fhirContext", "need_patient_banner", "intent", "fhirUser"}
    if unknown:
        raise ValueError(f"unknown fields: {', '.join(sorted(unknown))}")
    context: dict = {}
    for name in ("patient", "encounter"):
        value = body.get(name)
        if value is not None:
            if not isinstance(value, str) or not _FHIR_ID.match(value):
                raise ValueError(f"{name} must be a resource id (e.g. \"123\", not \"Patient/123\")")
            context[name] = value
    items = body.get("fhirContext", [])
    if not isinstance(items, list) or not all(_fhir_context_item(i) for i in items):
        raise ValueError('fhirContext must be a list of objects such as {"reference": "ServiceRequest/1"}')
    if items:
        context["fhirContext"] = items
    if not context:
        raise ValueError("a launch context needs a patient, an encounter or a fhirContext")
    banner = body.get("need_patient_banner", True)
    if not isinstance(banner, bool):
        raise ValueError("need_patient_banner must be true or false")
    context["need_patient_banner"] = banner
    for name in ("intent", "fhirUser"):
        value = body.get(name)
        if value is not None:
            if not isinstance(value, str) or (name == "fhirUser" and not _REFERENCE.match(value)):
                raise ValueError(f"{name} must be a string" + (" such as Practitioner/1" if name == "fhirUser" else ""))
            context[name] = value
    return context


def _fhir_context_item(item) -> bool:
    if not isinstance(item, dict) or not item or set(item) - set(FHIR_CONTEXT_KEYS):
        return False
    if not any(k in item for k in ("reference", "canonical", "identifier")):
        return False
    return "reference" not in item or (isinstance(item["reference"], str) and bool(_REFERENCE.match(item["reference"])))


async def create(state: AuthState, context: dict) -> str:
    launch = secrets.token_urlsafe(24)
    await state.put("launch", launch, context, expires=time.time() + LAUNCH_SECONDS)
    return launch


async def find(state: AuthState, launch: str) -> dict | None:
    return await state.get("launch", launch) if launch else None
