"""Emitters: one function per (parameter type, FHIR type) normalising a value into index rows.

``EMITTERS[(param type, FHIR type)]`` appends the rows of one value to an ``IndexValues`` under a
parameter code, in the forms of ``values.py``; the extractor (``extract.py``) picks one per
compiled branch at compile time, and composites (``composite.py``) the one of each component.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fhir_server.search import ucum
from fhir_server.search.normalize import date_range, fold, reference_target, to_decimal
from fhir_server.search.values import DATE_MAX, DATE_MIN, IndexValues

Emit = Callable[[IndexValues, str, Any], None]


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


def emit_profile(out: IndexValues, code: str, v: Any) -> None:
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
