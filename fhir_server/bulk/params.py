"""The kick-off parameters of ``$export``: from the query string (GET) or a Parameters body (POST)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import parse_qsl

import orjson

from fhir_server.bulk.associated import SUPPORTED as SUPPORTED_ASSOCIATED
from fhir_server.errors import invalid, not_supported
from fhir_server.search import params as search_params
from fhir_server.search.plan import parse_query

OUTPUT_FORMATS = ("application/fhir+ndjson", "application/ndjson", "ndjson")
_FILTER_START = re.compile(r",(?=[A-Z][A-Za-z]+\?)")  # a comma that starts the next query of a list


@dataclass(slots=True)
class ExportRequest:
    types: list[str] | None = None  # None: every type the level and the token allow
    since: str | None = None  # instants in the stored form (UTC, microseconds)
    until: str | None = None
    type_filters: dict[str, list[list[tuple[str, str]]]] = field(default_factory=dict)
    elements: dict[str, list[str]] = field(default_factory=dict)  # "*": every type
    patients: list[str] = field(default_factory=list)  # Patient ids (POST ``patient``)
    associated: list[str] = field(default_factory=list)  # includeAssociatedData codes
    warnings: list[str] = field(default_factory=list)  # ignored parameters (lenient handling)


def instant(value: str, name: str) -> str:
    """A FHIR instant (with a time zone) in the stored ``lastUpdated`` form, comparable as text."""
    try:
        t = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise invalid(f"{name} must be a FHIR instant such as 2026-01-01T00:00:00Z", name) from None
    if t.tzinfo is None:
        raise invalid(f"{name} needs a time zone (e.g. Z)", name)
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def from_body(body: bytes) -> list[tuple[str, str]]:
    """A Parameters resource as (name, value) pairs; ``valueReference`` gives its reference."""
    try:
        resource = orjson.loads(body) if body.strip() else {"resourceType": "Parameters"}
    except orjson.JSONDecodeError:
        raise invalid("The body is not JSON", "Parameters") from None
    if not isinstance(resource, dict) or resource.get("resourceType") != "Parameters":
        raise invalid("POST $export takes a Parameters resource", "Parameters")
    out = []
    for p in resource.get("parameter") or []:
        name = p.get("name") if isinstance(p, dict) else None
        value = next((v for k, v in p.items() if k.startswith("value")), None) if name else None
        if isinstance(value, dict):
            value = value.get("reference")
        if not isinstance(name, str) or not isinstance(value, str):
            raise invalid("Every parameter needs a name and a string, instant or Reference value", "Parameters.parameter")
        out.append((name, value))
    return out


def parse(items: list[tuple[str, str]], strict: bool) -> ExportRequest:
    req = ExportRequest()
    for name, value in items:
        if name == "_outputFormat":
            if value not in OUTPUT_FORMATS:
                raise invalid(f"_outputFormat must be one of {', '.join(OUTPUT_FORMATS)}", "_outputFormat")
        elif name == "_since":
            req.since = instant(value, "_since")
        elif name == "_until":
            req.until = instant(value, "_until")
        elif name == "_type":
            req.types = (req.types or []) + [t.strip() for t in value.split(",") if t.strip()]
        elif name == "_typeFilter":
            for one in _FILTER_START.split(value):
                type, sep, query = one.partition("?")
                check_type(type, "_typeFilter")
                if not sep or not query:
                    raise invalid(f"_typeFilter '{one}' must be Type?query", "_typeFilter")
                filter_items = parse_qsl(query, keep_blank_values=True)
                parse_query(type, filter_items, strict=True)  # 400 now for an unknown or bad parameter
                req.type_filters.setdefault(type, []).append(filter_items)
        elif name == "_elements":
            for e in (x.strip() for x in value.split(",")):
                type, dot, element = e.rpartition(".")
                if dot:
                    check_type(type, "_elements")
                if element:
                    req.elements.setdefault(type or "*", []).append(element)
        elif name == "patient":
            type, _, id = value.rpartition("/")
            if type.rsplit("/", 1)[-1] != "Patient" or not id:
                raise invalid(f"patient must reference a Patient: {value}", "patient")
            req.patients.append(id)
        elif name == "includeAssociatedData":
            for code in (c.strip() for c in value.split(",")):
                if code not in SUPPORTED_ASSOCIATED:
                    raise not_supported(f"includeAssociatedData '{code}' is not supported; this server supports "
                                        f"{' and '.join(SUPPORTED_ASSOCIATED)}", "includeAssociatedData")
                if code not in req.associated:
                    req.associated.append(code)
        elif name == "organizeOutputBy":
            raise not_supported("organizeOutputBy is a Bulk Data Access 3.0 (STU3) parameter; this server implements "
                                "Bulk Data Access 2.0 and writes one resource type per file", "organizeOutputBy")
        elif name == "_format":
            continue
        elif strict:
            raise not_supported(f"The $export parameter {name} is not supported", name)
        else:
            req.warnings.append(f"The $export parameter {name} is not supported and was ignored")
    for type in req.types or ():
        check_type(type, "_type")
    if req.types is not None:
        for type in list(req.type_filters):
            if type not in req.types:
                req.warnings.append(f"_typeFilter on {type}, a type not in _type, was ignored")
                del req.type_filters[type]
    if req.since and req.until and req.until < req.since:
        raise invalid("_until is before _since", "_until")
    return req


def check_type(type: str, expression: str) -> None:
    if type not in search_params.resource_types():
        raise invalid(f"Unknown resource type '{type}'", expression)
