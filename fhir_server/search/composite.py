"""Composite search parameters at write time: rows per element, one per value of each component.

A composite's expression selects elements (``Observation.component``, or ``Observation`` itself
for ``code-value-quantity``); each component is an expression on one element, typed by the
parameter its ``definition`` names (``params.component_params``). Both are compiled once per
resource type by the same compiler, and each component value goes through the emitter its own
parameter would use, so it is normalised exactly as that parameter's values are. An element gets
rows only when every component has a value on it: a composite search matches all of its
components on one element (``values.py`` describes the rows).

A composite whose expression is a union of other composites' expressions, with the same
components, is answered from their rows and stores none of its own (``stored_as``): R4's
``combo-code-value-quantity`` is ``code-value-quantity`` (the Observation) together with
``component-code-value-quantity`` (its components), and likewise ``combo-code-value-concept``.

Two R4 definitions need a hand:
- a component expression starting ``%resource.`` (MolecularSequence's ``*-variant-coordinate``)
  is evaluated on the resource, not on the element;
- ``DocumentReference`` ``relationship`` lists its components' expressions swapped (``relatesto``,
  a reference, with ``code``; ``relation``, a token, with ``target``): they are read the intended
  way round, so ``relationship=DocumentReference/1$replaces`` works.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

from fhir_server.search.emit import EMITTERS, Emit
from fhir_server.search.fhirpath_compile import Branch, Unsupported, compile_expression
from fhir_server.search.fhirpath_parse import split_union
from fhir_server.search.params import component_params, element_types, params_for
from fhir_server.search.values import IndexValues

log = logging.getLogger(__name__)
RESOURCE = "%resource."
# composite url -> its components' expressions, where R4 gives them the wrong way round
FIXED_EXPRESSIONS = {"http://hl7.org/fhir/SearchParameter/DocumentReference-relationship": ("target", "code")}

# The rows of one component, by its parameter's type, from what its emitter wrote under ``key``
# (token rows without system and code, e.g. a CodeableConcept's text, cannot match a token value).
_ROWS = {
    "token": lambda ix, key: [(s, c) for p, s, c, _ in ix.tokens if p == key and (s is not None or c is not None)],
    "string": lambda ix, key: [(folded,) for p, folded, _ in ix.strings if p == key],
    "date": lambda ix, key: [(lo, hi) for p, lo, hi in ix.dates if p == key],
    "reference": lambda ix, key: [(target,) for p, target in ix.references if p == key],
    "number": lambda ix, key: [(v,) for p, v in ix.numbers if p == key],
    "quantity": lambda ix, key: [q[1:] for q in ix.quantities if q[0] == key],
    "uri": lambda ix, key: [(v,) for p, v in ix.uris if p == key],
}


@dataclass(frozen=True, slots=True)
class Component:
    kind: str  # the component parameter's type
    on_resource: bool  # a ``%resource.`` expression: evaluated on the resource
    branches: tuple[tuple[Branch, Emit], ...]

    def values(self, focus: object) -> list[tuple[Emit, object]]:
        """The component's values on ``focus``, each with the emitter that normalises it."""
        return [(emit, v) for branch, emit in self.branches for v in branch.run([focus])]


# per composite code: (base branch, its components) for each typed branch of the base expression
Plan = tuple[tuple[str, tuple[tuple[Branch, tuple[Component, ...]], ...]], ...]


def extract(resource: dict, out: IndexValues) -> None:
    """Append the composite rows of ``resource`` (a known resource type) to ``out``."""
    for code, bases in plan(resource["resourceType"]):
        element_no = -1
        for base, components in bases:
            for element in base.run([resource]):
                element_no += 1
                found = []
                # the raw values first, the last component (a value[x], often absent) first
                for component in reversed(components):
                    values = component.values(resource if component.on_resource else element)
                    if not values:
                        break
                    found.append(values)
                else:
                    out.composites += _rows(code, element_no, components, found[::-1])


def _rows(code: str, element_no: int, components: tuple[Component, ...], found: list[list]) -> list[tuple]:
    """The normalised rows of one element's components (none unless every component has one);
    each component's values are emitted under a key of its own, ``code$position``."""
    scratch = IndexValues()
    for position, values in enumerate(found):
        key = f"{code}${position}"
        for emit, value in values:
            emit(scratch, key, value)
    rows = []
    for position, component in enumerate(components):
        normalised = _ROWS[component.kind](scratch, f"{code}${position}")
        if not normalised:
            return []
        rows += [(code, element_no, position, component.kind, row) for row in dict.fromkeys(normalised)]
    return rows


def supported(resource_type: str, code: str) -> bool:
    return all(any(c == part for c, _ in plan(resource_type)) for part in stored_as(resource_type, code))


@functools.cache
def stored_as(resource_type: str, code: str) -> tuple[str, ...]:
    """The composites whose rows answer ``code``: itself, or the composites of the type whose
    expressions are the branches of its union expression, when they have the same components
    (same types and expressions), so each element's rows are written once."""
    params = params_for(resource_type)
    p = params[code]
    parts = split_union(p.expression or "")
    if len(parts) < 2:
        return (code,)
    same = _signature(resource_type, code)
    by_expression = {q.expression: c for c, q in params.items()
                     if c != code and q.type == "composite" and _signature(resource_type, c) == same}
    if not all(part in by_expression for part in parts):
        return (code,)
    return tuple(by_expression[part] for part in parts)


def _signature(resource_type: str, code: str) -> tuple:
    p = params_for(resource_type)[code]
    kinds = [c.type for c in component_params(resource_type, code)]
    return tuple(zip(kinds, FIXED_EXPRESSIONS.get(p.url) or (e for _, e in p.components)))


@functools.cache
def plan(resource_type: str) -> Plan:
    out = []
    for code, p in params_for(resource_type).items():
        if p.type != "composite" or not p.expression or not p.components:
            continue
        if stored_as(resource_type, code) != (code,):  # answered from other composites' rows
            continue
        try:
            out.append((code, _compile(resource_type, code)))
        except Unsupported:
            log.warning("composite search parameter %s.%s is not compiled: not supported", resource_type, code)
    return tuple(out)


def _compile(resource_type: str, code: str) -> tuple[tuple[Branch, tuple[Component, ...]], ...]:
    p = params_for(resource_type)[code]
    expressions = FIXED_EXPRESSIONS.get(p.url) or tuple(e for _, e in p.components)
    kinds = [c.type for c in component_params(resource_type, code)]
    bases = []
    for base in compile_expression(p.expression, resource_type, element_types):
        components = []
        for kind, expression in zip(kinds, expressions):
            on_resource = expression.startswith(RESOURCE)
            ctx = resource_type if on_resource else base.type
            if on_resource:
                expression = resource_type + "." + expression[len(RESOURCE):]
            branches = tuple((b, emit) for b in compile_expression(expression, ctx, element_types)
                             if (emit := EMITTERS.get((kind, b.type))) is not None)
            components.append(Component(kind, on_resource, branches))
        bases.append((base, tuple(components)))
    return tuple(bases)
