"""GET [base]/metadata: the CapabilityStatement, generated from what the server implements."""

from __future__ import annotations

import json
from functools import cache, lru_cache

import orjson
from starlette.requests import Request
from starlette.responses import Response

from fhir_server.http import base_url, json_response, negotiate, wants_pretty
from fhir_server.search import composite
from fhir_server.search import params as search_params
from fhir_server.search.plan import STORE_PARAMS
from fhir_server.services import Services
from fhir_server.subscriptions.topics import TOPICS
from profiles import PROFILES, artifacts

INTERACTIONS = ["read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create", "search-type"]
SEARCH_TYPES = ("number", "date", "string", "token", "reference", "quantity", "uri", "composite")
VERSION = "0.1.0"
_BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport"


def _operations() -> dict[str, list[dict]]:
    """Per resource type, the operations of operations/: one per OperationDefinition published in
    profiles/ (a definition is added with its route, so the statement lists only what works), and
    the Subscriptions R5 Backport's operations (fhir_server/subscriptions)."""
    out: dict[str, list[dict]] = {}
    for path in sorted(PROFILES.glob("operationdefinition-*.json")):
        opdef = json.loads(path.read_text())
        for type in opdef["resource"]:
            out.setdefault(type, []).append({"name": opdef["code"], "definition": opdef["url"]})
    out["Subscription"] = [{"name": n, "definition": f"{_BACKPORT}/OperationDefinition/backport-subscription-{n}"}
                           for n in ("status", "events", "get-ws-binding-token")]
    return out


OPERATIONS = _operations()
# The topics a Subscription may name (Subscriptions R5 Backport: advertised on the Subscription resource).
_TOPIC_EXTENSION = f"{_BACKPORT}/StructureDefinition/capabilitystatement-subscriptiontopic-canonical"


@cache
def _revincludes() -> dict[str, list[str]]:
    """Per resource type, the ``Source:param`` reference parameters that can point at it."""
    out: dict[str, list[str]] = {}
    for source in sorted(search_params.resource_types()):
        for code, p in sorted(search_params.params_for(source).items()):
            if p.type == "reference":
                for target in p.target:
                    out.setdefault(target, []).append(f"{source}:{code}")
    return out


@cache
def _resources() -> list[dict]:
    out = []
    revincludes = _revincludes()
    profiles = artifacts.profiles_by_type()  # our StructureDefinitions (profiles/): validated on write
    for type in sorted(search_params.resource_types()):
        params = [
            {"name": code, "definition": p.url, "type": p.type}
            for code, p in sorted(search_params.params_for(type).items())
            if p.type in SEARCH_TYPES and (p.expression or code in STORE_PARAMS)
            and (p.type != "composite" or composite.supported(type, code))
        ]
        params += [{"name": "_list", "type": "special", "documentation": "The items of List/[id]"}]
        includes = ["*"] + [f"{type}:{code}" for code, p in sorted(search_params.params_for(type).items())
                            if p.type == "reference"]
        out.append({
            "type": type,
            "profile": f"http://hl7.org/fhir/StructureDefinition/{type}",
            **({"supportedProfile": profiles[type]} if type in profiles else {}),
            "interaction": [{"code": c} for c in INTERACTIONS],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": True,
            "conditionalRead": "full-support",  # If-None-Match and If-Modified-Since
            "conditionalUpdate": True,
            "conditionalDelete": "single",
            "referencePolicy": ["literal", "logical"],
            "searchInclude": includes,
            **({"searchRevInclude": revincludes[type]} if type in revincludes else {}),
            "searchParam": params,
            **({"operation": OPERATIONS[type]} if type in OPERATIONS else {}),
        })
        if type == "Subscription":
            out[-1]["extension"] = [{"url": _TOPIC_EXTENSION, "valueCanonical": t.url} for t in TOPICS]
    return out


def statement(base: str) -> dict:
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-23",
        "publisher": "telemed-fhir",
        "kind": "instance",
        "software": {"name": "telemed-fhir", "version": VERSION},
        "implementation": {"description": "Telemedicine FHIR R4 server", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json", "application/fhir+json"],
        "rest": [{
            "mode": "server",
            "resource": _resources(),
            "interaction": [{"code": "transaction"}, {"code": "batch"}, {"code": "history-system"}],
            # Bulk Data Access 2.0 (fhir_server/bulk): system, Patient and Group level.
            "operation": [
                {"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"},
                {"name": "patient-export",
                 "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"},
                {"name": "group-export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"},
            ],
        }],
    }


@lru_cache(maxsize=16)
def _body(base: str, security: bytes) -> bytes:
    """The statement's bytes: the same for every request to one base URL (``_resources`` is fixed
    at start), so built once, not per request (it took ~3 ms of CPU)."""
    out = statement(base)
    out["rest"][0]["security"] = orjson.loads(security)
    return orjson.dumps(out)


async def handle(request: Request, svc: Services) -> Response:
    from fhir_server.auth.smart_configuration import capability_security

    body = _body(base_url(request, svc.settings.base_url), orjson.dumps(capability_security(request, svc)))
    return json_response(body, 200, None, negotiate(request), wants_pretty(request))
