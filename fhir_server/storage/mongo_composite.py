"""MongoDB's composite index: ``s.<code>`` entries and the filter of a composite clause.

``s.<code>`` holds one sub-document per element the composite's expression selects,
``{c0: [...], c1: [...], ...}``: component ``n``'s values in ``c<n>``, in the stored form of the
component's type (``mongo_values``: token keys, ``{lo, hi}`` dates, Decimal128 numbers,
``{v, s, c, cv, cc}`` quantities, folded strings, reference and uri strings). The fields are
``c0``, ``c1``... rather than ``0``, ``1``: a numeric path component would also address array
positions. An alternative ``a$b`` is one ``$elemMatch`` on ``s.<code>``, holding the filter of
each component on its ``c<n>`` (the same filters as the component's own parameter), so all
components match on one element. A composite answered from other composites' rows
(``composite.stored_as``: ``combo-*``) is an ``$or`` of the same ``$elemMatch`` on their fields.
"""

from __future__ import annotations

from fhir_server.search.composite import stored_as
from fhir_server.search.plan import Clause
from fhir_server.storage.mongo_values import and_, decimal128, or_, quantity_doc, token_keys, value_filter

# A component row's stored values (a list, extended into ``c<n>``) by its type.
_STORED = {
    "token": lambda r: token_keys(r[0], r[1]),
    "string": lambda r: [r[0]],
    "date": lambda r: [{"lo": r[0], "hi": r[1]}],
    "reference": lambda r: [r[0]],
    "uri": lambda r: [r[0]],
    "number": lambda r: [decimal128(r[0])],
    "quantity": lambda r: [quantity_doc(*r)],
}


def index_entries(rows: list[tuple]) -> dict[str, list[dict]]:
    """``s`` entries of the composite rows of ``values.IndexValues``: per code, one
    sub-document per element."""
    elements: dict[tuple[str, int], dict[str, list]] = {}
    for param, elem, comp, kind, row in rows:
        element = elements.setdefault((param, elem), {})
        values = element.setdefault(f"c{comp}", [])
        for v in _STORED[kind](row):
            if v not in values:
                values.append(v)
    out: dict[str, list[dict]] = {}
    for (param, _), element in elements.items():
        out.setdefault(param, []).append(element)
    return out


def condition(type: str, c: Clause) -> dict:
    """Some element of ``s.<code>`` matches every component of one alternative (``code``: each
    composite whose rows answer ``c``'s, see ``composite.stored_as``)."""
    alternatives = []
    for v in c.values:
        components = [or_([value_filter(part, pv, f"c{n}") for pv in part.values]) for n, part in enumerate(v.parts)]
        match = {"$elemMatch": and_(components)}
        alternatives += [{f"s.{code}": match} for code in stored_as(type, c.param)]
    return or_(alternatives)
