"""Operation inputs: an OperationDefinition (published under ``profiles/``) and the Parameters
resource of one call, checked against the definition's ``in`` parameters.

``parse`` answers each parameter's values by name: a ``value[x]`` of the declared type, or the
``resource`` of a resource-typed parameter. Unknown names, missing required parameters, too many
values and values of another type are 400 with the parameter as expression.
"""

from __future__ import annotations

import json
from functools import cache

import orjson
from starlette.requests import Request

from fhir_server.errors import OperationOutcomeError, invalid, issue
from fhir_server.http import JSON_TYPES, read_body
from fhir_server.search import params as search_params
from fhir_server.write import accept
from profiles import PROFILES

__all__ = ["PROFILES", "definition", "parse", "read", "one"]


@cache
def definition(name: str) -> dict:
    """The OperationDefinition ``profiles/operationdefinition-{name}.json`` (e.g. ``task-accept``)."""
    return json.loads((PROFILES / f"operationdefinition-{name}.json").read_text())


def _value_key(type: str) -> str | None:
    """Where a parameter of ``type`` carries its value: ``valueX``, or None for ``resource``."""
    if type == "Resource" or type in search_params.resource_types():
        return None
    return "value" + type[0].upper() + type[1:]


def parse(opdef: dict, body: dict) -> dict[str, list]:
    """The ``in`` parameters of ``body`` (a Parameters resource) by name, checked against ``opdef``."""
    declared = {p["name"]: p for p in opdef["parameter"] if p["use"] == "in"}
    found: dict[str, list] = {name: [] for name in declared}
    for n, param in enumerate(body.get("parameter") or ()):
        where = f"Parameters.parameter[{n}]"
        name = param.get("name")
        if name not in declared:
            raise invalid(f"${opdef['code']} has no parameter '{name}' (it takes: {', '.join(declared) or 'none'})",
                          where)
        p = declared[name]
        key = _value_key(p["type"])
        if key is None:
            value = param.get("resource")
            if not isinstance(value, dict) or p["type"] not in ("Resource", value.get("resourceType")):
                raise invalid(f"Parameter '{name}' must carry a {p['type']} resource", where)
        else:
            value = param.get(key)
            if value is None:
                raise invalid(f"Parameter '{name}' must carry {key}", where)
        found[name].append(value)
    for name, p in declared.items():
        if len(found[name]) < p["min"]:
            raise OperationOutcomeError([issue("required", f"${opdef['code']} needs the parameter '{name}'",
                                               f"Parameters.parameter.where(name='{name}')")])
        if p["max"] != "*" and len(found[name]) > int(p["max"]):
            raise invalid(f"Parameter '{name}' may be given at most {p['max']} time(s)",
                          f"Parameters.parameter.where(name='{name}')")
    return found


async def read(request: Request, opdef: dict, max_bytes: int, max_depth: int) -> dict[str, list]:
    """The call's Parameters body (none: no parameters), checked as FHIR and against ``opdef``."""
    raw = await read_body(request, max_bytes)
    if not raw.strip():
        return parse(opdef, {})
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in JSON_TYPES:
        raise OperationOutcomeError([issue("not-supported", f"Content-Type '{ctype or '(none)'}' is not supported; "
                                           "send application/fhir+json")], status=415)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise OperationOutcomeError([issue("structure", f"The body is not valid JSON: {exc}")]) from None
    return parse(opdef, accept(body, "Parameters", max_depth))


def one(values: dict[str, list], name: str):
    """The single value of ``name``, or None."""
    got = values.get(name) or []
    return got[0] if got else None
