"""Write-time extraction of search index values: ``extract(resource) -> IndexValues``.

Per resource type, every SearchParameter expression is compiled once (``fhirpath_compile``) into
typed branches, and each branch gets the emitter for (param type, FHIR type) at compile time; an
extraction is then a few dict walks per param. Expressions outside the compiled subset fall back
to fhirpathpy with shape-based emitters: none of the 1377 R4 parameters do (the generator prints
the count; ``test_extract`` asserts it). The emitters are in ``emit.py``; composite parameters
are extracted by ``composite.py``, per element of their base expression. Special parameters are
not extracted, nor are the params the store handles itself (``SKIPPED``).
"""

from __future__ import annotations

import functools
import logging
from decimal import Decimal
from typing import Any

from fhir_server.search import composite
from fhir_server.search.emit import EMITTERS, Emit, emit_profile
from fhir_server.search.fhirpath_compile import Step, Unsupported, compile_expression, reference_type
from fhir_server.search.params import element_types, params_for, resource_types
from fhir_server.search.values import IndexValues

SKIPPED = frozenset({"_id", "_lastUpdated", "_text", "_content", "_list", "_query", "_has", "_type"})
CONTACT_SYSTEMS = frozenset({"phone", "fax", "email", "pager", "url", "sms", "other"})
log = logging.getLogger(__name__)


def extract(resource: dict) -> IndexValues:
    out = IndexValues()
    resource_type = resource.get("resourceType")
    if resource_type not in resource_types():
        return out
    get = resource.get
    for code, key, steps, emit in _plan(resource_type):
        if key is None:
            values = [resource]
        else:  # the first step inlined: most params' top-level element is absent
            values = get(key)
            if values is None:
                continue
            if type(values) is not list:
                values = [values]
        for step in steps:
            values = step(values)
            if not values:
                break
        for value in values:
            emit(out, code, value)
    composite.extract(resource, out)
    for name in IndexValues.__slots__:
        rows = getattr(out, name)
        if len(rows) > 1:
            setattr(out, name, list(dict.fromkeys(rows)))
    return out


def prepare() -> None:
    """Compile the plans of every resource type now (at start-up) rather than at first write."""
    for resource_type in resource_types():
        _plan(resource_type)
        composite.plan(resource_type)


def fallbacks(resource_type: str) -> list[str]:
    """Codes of ``resource_type`` evaluated by fhirpathpy rather than compiled walkers."""
    return [code for code, _, steps, _ in _plan(resource_type) if steps and getattr(steps[0], "fhirpathpy", False)]


@functools.cache
def _plan(resource_type: str) -> tuple[tuple[str, str | None, tuple[Step, ...], Emit], ...]:
    """(code, first element or None, remaining steps, emitter) per compiled branch."""
    plan = []
    for code, p in params_for(resource_type).items():
        if code in SKIPPED or p.type in ("composite", "special") or not p.expression:
            continue
        try:
            branches = compile_expression(p.expression, resource_type, element_types)
        except Unsupported:
            plan.append((code, None, (_fhirpathpy(p.expression),), _untyped(p.type)))
            continue
        for b in branches:
            emit = emit_profile if code == "_profile" else EMITTERS.get((p.type, b.type))
            if emit is None:
                continue
            key = getattr(b.steps[0], "key", None) if b.steps else None
            plan.append((code, key, b.steps[1:] if key else b.steps, emit))
    return tuple(plan)


def _fhirpathpy(expression: str) -> Step:
    """fhirpathpy evaluation, with ``resolve()`` answering the referenced type (for ``is``)."""
    import fhirpathpy
    from fhirpathpy.engine.nodes import ResourceNode
    from fhirpathpy.models import models

    def resolve(inputs: list) -> list:
        return [ResourceNode.create_node({"resourceType": t}) for v in inputs if (t := reference_type(v))]

    options = {"userInvocationTable": {"resolve": {"fn": resolve, "arity": {0: []}}}}
    compiled = fhirpathpy.compile(expression, models["r4"], options)

    def run(focus: list) -> list:
        try:
            return compiled(focus[0], {})
        except Exception:  # fhirpathpy is strict (e.g. ``as`` on a collection): index nothing
            log.warning("search expression failed, not indexed: %s", expression, exc_info=True)
            return []

    run.fhirpathpy = True  # type: ignore[attr-defined]
    return run


_UNTYPED_STRING = {"token": "code", "string": "string", "date": "dateTime", "reference": "canonical", "uri": "uri"}


def _untyped(param_type: str) -> Emit:
    """Shape-based emitter for fhirpathpy results, whose FHIR types are not known statically."""

    def emit(out: IndexValues, code: str, v: Any) -> None:
        kind = type(v)
        if kind is dict:
            fhir_type = _shape(v)
        elif kind is str:
            fhir_type = _UNTYPED_STRING.get(param_type, "")
        else:
            fhir_type = "boolean" if kind is bool else "decimal" if kind in (int, float, Decimal) else ""
        if (fn := EMITTERS.get((param_type, fhir_type))) is not None:
            fn(out, code, v)

    return emit


def _shape(v: dict) -> str:
    if "coding" in v or ("text" in v and "value" not in v and "family" not in v and "line" not in v):
        return "CodeableConcept"
    if "reference" in v or ("identifier" in v and "value" not in v):
        return "Reference"
    if "family" in v or "given" in v:
        return "HumanName"
    if "line" in v or "city" in v or "postalCode" in v:
        return "Address"
    if "start" in v or "end" in v:
        return "Period"
    if "event" in v or "repeat" in v:
        return "Timing"
    if "value" in v and ("unit" in v or "currency" in v or "code" in v or type(v["value"]) is not str):
        return "Quantity"
    if "value" in v:
        return "ContactPoint" if v.get("system") in CONTACT_SYSTEMS else "Identifier"
    return "Coding"
