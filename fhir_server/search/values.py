"""Search index values of one resource, extracted at write time.

The extractor (``fhir_server.search.extract``) produces one ``IndexValues`` per resource
version; each storage adapter writes it in its own shape (SQLite index tables, MongoDB's
``s`` sub-document). All values are already normalised, so adapters never re-interpret FHIR.

Normalised forms
- token:     (param, system or None, code or None, text or None). ``text`` is the display /
             CodeableConcept.text / Identifier.type.text used by ``:text`` (lower-cased, accent-folded).
             A Reference's identifier is emitted as a token under ``"<param>:identifier"``.
- string:    (param, folded, exact). ``folded`` is lower-cased, accent-folded, whitespace-collapsed.
- date:      (param, lo, hi): the instant range the value covers as UTC strings of the fixed
             form ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (so string order is time order).
- reference: (param, target): ``"Type/id"`` for relative references (a versioned reference
             ``Type/id/_history/v`` is stored as ``Type/id``), absolute URLs and canonicals as given.
- number:    (param, value) with ``value`` a ``decimal.Decimal``.
- quantity:  (param, value, system, code, canonical_value, canonical_code); canonical_* are the
             UCUM-canonical form when the unit is UCUM and convertible, else equal to value/code.
- uri:       (param, value).
- composite: (param, element, component, kind, row): one row per value of one component of one
             element the composite's expression selects (``element`` numbers them per parameter,
             ``component`` is the position in the definition); ``kind`` is the component
             parameter's type and ``row`` its form above without the param, cut to what a
             composite search compares: token (system, code), string (folded,), date (lo, hi),
             reference (target,), number (value,), quantity (value, system, code,
             canonical_value, canonical_code), uri (value,). An element is indexed only when
             every component has a value: a composite search must match all of them on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

DATE_MIN = "0001-01-01T00:00:00.000000Z"
DATE_MAX = "9999-12-31T23:59:59.999999Z"


@dataclass(slots=True)
class IndexValues:
    tokens: list[tuple[str, str | None, str | None, str | None]] = field(default_factory=list)
    strings: list[tuple[str, str, str]] = field(default_factory=list)
    dates: list[tuple[str, str, str]] = field(default_factory=list)
    references: list[tuple[str, str]] = field(default_factory=list)
    numbers: list[tuple[str, Decimal]] = field(default_factory=list)
    quantities: list[tuple[str, Decimal, str | None, str | None, Decimal, str | None]] = field(default_factory=list)
    uris: list[tuple[str, str]] = field(default_factory=list)
    composites: list[tuple[str, int, int, str, tuple]] = field(default_factory=list)


def sort_keys(ix: IndexValues, kinds: frozenset[str] = frozenset({"date", "string", "number", "quantity",
                                                                   "token", "reference", "uri"})
              ) -> dict[str, tuple[object, object]]:
    """Per parameter, the (lowest, highest) value a resource sorts by: ``_sort=p`` orders by the
    lowest, ``_sort=-p`` by the highest. Dates by their ranges, quantities by canonical value,
    tokens by code, strings folded, references by target; numbers as floats. ``kinds`` limits
    the parameter types considered."""
    keys: dict[str, list] = {}

    def add(param: str, lo, hi) -> None:
        k = keys.get(param)
        if k is None:
            keys[param] = [lo, hi]
        else:
            if lo < k[0]:
                k[0] = lo
            if hi > k[1]:
                k[1] = hi

    for p, lo, hi in ix.dates if "date" in kinds else ():
        add(p, lo, hi)
    for p, folded, _ in ix.strings if "string" in kinds else ():
        add(p, folded, folded)
    for p, _system, code, _text in ix.tokens if "token" in kinds else ():
        if code is not None and ":" not in p:
            add(p, code, code)
    for p, target in ix.references if "reference" in kinds else ():
        add(p, target, target)
    for p, v in ix.numbers if "number" in kinds else ():
        add(p, float(v), float(v))
    for p, _v, _s, _c, cv, _cc in ix.quantities if "quantity" in kinds else ():
        add(p, float(cv), float(cv))
    for p, v in ix.uris if "uri" in kinds else ():
        add(p, v, v)
    return {p: (k[0], k[1]) for p, k in keys.items()}
