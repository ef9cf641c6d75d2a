"""Write-time extraction of search index values: ``extract(resource) -> IndexValues``.

Per resource type, every SearchParameter expression is compiled once (``fhirpath_compile``) into
typed branches, and each branch gets the emitter for (param type, FHIR type) at compile time; an
extraction is then a few dict walks per param. Expressions outside the compiled subset fall back
to fhirpathpy with shape-based emitters: none of the 1377 R4 parameters do (the generator prints
the count; ``test_extract`` asserts it). Composite and special parameters are not extracted yet,
nor are the params the store handles itself (``SKIPPED``).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from fhir_server.search import ucum
from fhir_server.search.fhirpath_compile import Step, Unsupported, compile_expression, reference_type
from fhir_server.search.normalize import date_range, fold, reference_target, to_decimal
from fhir_server.search.params import element_types, params_for, resource_types
from fhir_server.search.values import DATE_MAX, DATE_MIN, IndexValues

SKIPPED = frozenset({"_id", "_lastUpdated", "_text", "_content", "_list", "_query", "_has", "_type"})
CONTACT_SYSTEMS = frozenset({"phone", "fax", "email", "pager", "url", "sms", "other"})
log = logging.getLogger(__name__)
Emit = Callable[[IndexValues, str, Any], None]


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
    for name in IndexValues.__slots__:
        rows = getattr(out, name)
        if len(rows) > 1:
            setattr(out, name, list(dict.fromkeys(rows)))
    return out


def prepare() -> None:
    """Compile the plans of every resource type now (at start-up) rather than at first write."""
    for resource_type in resource_types():
        _plan(resource_type)


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
            emit = _emit_profile if code == "_profile" else EMITTERS.get((p.type, b.type))
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


# ---------------------------------------------------------------- token


def _coding(out: IndexValues, code: str, v: Any, text: str | None = None) -> None:
    if type(v) is dict:
        display = v.get("display")
        if text is None and type(display) is str:
            text = fold(display)
        out.tokens.append((code, v.get("system"), v.get("code"), text))


def _codeable_concept(out: IndexValues, code: str, v: Any) -> None:
    if type(v) is not dict:
        return
    text = v.get("text")
    text = fold(text) if type(text) is str else None
    for c in v.get("coding") or ():
        _coding(out, code, c)  # each coding with its display as the text :text searches
    if text:  # and the concept's own text, in a row of its own (no system, no code)
        out.tokens.append((code, None, None, text))


def _identifier(out: IndexValues, code: str, v: Any) -> None:
    if type(v) is dict:
        kind = v.get("type")
        text = kind.get("text") if type(kind) is dict else None
        out.tokens.append((code, v.get("system"), v.get("value"), fold(text) if type(text) is str else None))
        if type(kind) is dict and type(v.get("value")) is str:
            # ``:of-type``: one row per type coding, system "typesystem|typecode", code the value
            for c in kind.get("coding") or ():
                if type(c) is dict and c.get("code"):
                    out.tokens.append((f"{code}:of-type", f"{c.get('system') or ''}|{c['code']}", v["value"], None))


def _contact_point(out: IndexValues, code: str, v: Any) -> None:
    if type(v) is dict and type(v.get("value")) is str:
        out.tokens.append((code, None, v["value"], None))


def _token_code(out: IndexValues, code: str, v: Any) -> None:
    if type(v) is str:
        out.tokens.append((code, None, v, None))


def _token_boolean(out: IndexValues, code: str, v: Any) -> None:
    if type(v) is bool:
        out.tokens.append((code, None, "true" if v else "false", None))


# ---------------------------------------------------------------- string


def _string(out: IndexValues, code: str, v: Any) -> None:
    if type(v) is str and v:
        out.strings.append((code, fold(v), v))


def _parts(fields: tuple[str, ...]) -> Emit:
    def emit(out: IndexValues, code: str, v: Any) -> None:
        if type(v) is dict:
            for name in fields:
                part = v.get(name)
                for s in part if type(part) is list else (part,):
                    _string(out, code, s)

    return emit


_human_name = _parts(("family", "given", "prefix", "suffix", "text"))
_address = _parts(("line", "city", "district", "state", "postalCode", "country", "text"))


# ---------------------------------------------------------------- date


def _date(out: IndexValues, code: str, v: Any) -> None:
    if type(v) is str and (r := date_range(v)) is not None:
        out.dates.append((code, r[0], r[1]))


def _period(out: IndexValues, code: str, v: Any) -> None:
    if type(v) is not dict:
        return
    start, end = v.get("start"), v.get("end")
    lo = date_range(start) if type(start) is str else None
    hi = date_range(end) if type(end) is str else None
    if lo or hi:
        out.dates.append((code, lo[0] if lo else DATE_MIN, hi[1] if hi else DATE_MAX))


def _timing(out: IndexValues, code: str, v: Any) -> None:
    if type(v) is not dict:
        return
    ranges = [r for e in v.get("event") or () if type(e) is str and (r := date_range(e))]
    if ranges:
        out.dates.append((code, min(r[0] for r in ranges), max(r[1] for r in ranges)))
    elif type(repeat := v.get("repeat")) is dict:
        _period(out, code, repeat.get("boundsPeriod"))


# ---------------------------------------------------------------- reference, uri


def _reference(out: IndexValues, code: str, v: Any) -> None:
    if type(v) is not dict:
        return
    ref = v.get("reference")
    if type(ref) is str and (target := reference_target(ref)) is not None:
        out.references.append((code, target))
    if type(v.get("identifier")) is dict:
        _identifier(out, code + ":identifier", v["identifier"])


def _canonical(out: IndexValues, code: str, v: Any) -> None:
    if type(v) is str and v:
        out.references.append((code, v))
        if "|" in v:
            out.references.append((code, v.split("|", 1)[0]))


def _uri(out: IndexValues, code: str, v: Any) -> None:
    if type(v) is str and v:
        out.uris.append((code, v))


def _emit_profile(out: IndexValues, code: str, v: Any) -> None:
    """``_profile`` is a uri param in R4 over canonicals: searchable both ways."""
    _uri(out, code, v)
    _canonical(out, code, v)


# ---------------------------------------------------------------- number, quantity


def _number(out: IndexValues, code: str, v: Any) -> None:
    if (d := to_decimal(v)) is not None:
        out.numbers.append((code, d))


def _quantity(out: IndexValues, code: str, v: Any) -> None:
    if type(v) is not dict or (value := to_decimal(v.get("value"))) is None:
        return
    if "currency" in v:
        system, unit = "urn:iso:std:iso:4217", v.get("currency")
    else:
        system, unit = v.get("system"), v.get("code") or v.get("unit")
    canonical_value, canonical_code = value, unit
    if system == ucum.UCUM and type(v.get("code")) is str:
        converted = ucum.canonical(value, v["code"])
        if converted is not None:
            canonical_value, canonical_code = converted
    out.quantities.append((code, value, system, unit, canonical_value, canonical_code))
    human = v.get("unit")
    if type(human) is str and human != unit:  # ``5.4||mg`` matches the code or the stated human unit
        out.quantities.append((code, value, system, human, canonical_value, canonical_code))


# ---------------------------------------------------------------- dispatch

_STRINGISH = ("string", "code", "id", "uri", "url", "canonical", "oid", "uuid", "markdown")
_QUANTITIES = ("Quantity", "Age", "Duration", "Distance", "Count", "Money", "SimpleQuantity", "MoneyQuantity")

EMITTERS: dict[tuple[str, str], Emit] = {
    ("token", "Coding"): _coding,
    ("token", "CodeableConcept"): _codeable_concept,
    ("token", "Identifier"): _identifier,
    ("token", "ContactPoint"): _contact_point,
    ("token", "boolean"): _token_boolean,
    **{("token", t): _token_code for t in _STRINGISH},
    **{("string", t): _string for t in _STRINGISH},
    ("string", "HumanName"): _human_name,
    ("string", "Address"): _address,
    **{("date", t): _date for t in ("date", "dateTime", "instant")},
    ("date", "Period"): _period,
    ("date", "Timing"): _timing,
    ("reference", "Reference"): _reference,
    **{("reference", t): _canonical for t in ("canonical", "uri", "url")},
    **{("number", t): _number for t in ("decimal", "integer", "positiveInt", "unsignedInt")},
    **{("quantity", t): _quantity for t in _QUANTITIES},
    **{("uri", t): _uri for t in ("uri", "url", "canonical", "oid", "uuid")},
}


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
