"""The slice of the FHIR R4 structure the FHIRPath Patch engine needs.

A thin view over ``fhir_server.validation.definitions`` (the server's one copy of the R4
element definitions): element lookup by FHIRPath name or JSON key, type ancestry, type
compatibility of a Parameters value with an element. An element typed by a backbone element
reports the declared type (``BackboneElement``, or ``Element`` inside data types) and its
definition path (``Observation.component``, or the target of a content reference such as
``Questionnaire.item.item`` -> ``Questionnaire.item``) as the base of its children; a
profiled element reports its R4 type (``Quantity``, not ``SimpleQuantity``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from fhir_server.validation import definitions

BACKBONE = ("BackboneElement", "Element")


@dataclass(frozen=True)
class ElementInfo:
    path: str               # definition path: the base for the children of a backbone element
    types: tuple[str, ...]
    repeating: bool
    choice: bool


def is_known_base(base: str | None) -> bool:
    """Whether ``base`` (a type name or a backbone element path) has known children."""
    t = definitions.type_def(base)
    return t is not None and bool(t.elements)


@functools.cache
def element(base: str | None, name: str) -> ElementInfo | None:
    """The definition of child ``name`` (FHIRPath name, no type suffix) of ``base``."""
    e = definitions.element(base, name)
    if e is None:
        return None
    target = definitions.type_def(e.types[0]) if len(e.types) == 1 else None
    if target is not None and target.kind == "backbone":  # own backbone, or a content reference
        return ElementInfo(target.name, (target.base,), e.repeating, False)
    return ElementInfo(f"{base}.{name}", e.types, e.repeating, e.choice)


@functools.cache
def resolve_key(base: str | None, key: str) -> tuple[str, ElementInfo | None, str | None]:
    """JSON property ``key`` of an object of ``base`` -> (FHIRPath name, definition, type).

    ``valueQuantity`` of ``Observation`` gives ``("value", <Observation.value>, "Quantity")``;
    the type is None when several are allowed and the key does not tell which.
    """
    info = element(base, key)
    if info is not None and not info.choice:
        return key, info, info.types[0] if len(info.types) == 1 else None
    for i in range(len(key) - 1, 0, -1):
        if key[i].isupper():
            info = element(base, key[:i])
            if info is not None and info.choice:
                suffix = key[i:]
                low = suffix[0].lower() + suffix[1:]
                if low in info.types:
                    return key[:i], info, low
                if suffix in info.types:
                    return key[:i], info, suffix
    return key, None, None


def choice_key(name: str, type_name: str) -> str:
    """JSON property of choice element ``name`` holding a ``type_name`` (``deceased``+``boolean``)."""
    return name + type_name[0].upper() + type_name[1:]


def is_primitive(type_name: str | None) -> bool:
    return type_name is not None and type_name in definitions.primitive_types()


def ancestors(type_name: str) -> list[str]:
    """``type_name`` and the types it specialises (``Age`` -> Age, Quantity, Element)."""
    return list(definitions.ancestors(type_name))


def is_resource_type(type_name: str | None) -> bool:
    return type_name is not None and "Resource" in definitions.ancestors(type_name)


def type_of_value_key(key: str) -> str | None:
    """The FHIR type named by a ``value[x]`` key of a Parameters part (``valueDate`` -> date)."""
    if not key.startswith("value") or len(key) <= 5:
        return None
    suffix = key[5:]
    low = suffix[0].lower() + suffix[1:]
    return low if low in definitions.primitive_types() else suffix


def compatible(value_type: str | None, allowed: tuple[str, ...]) -> bool:
    """Whether a value of ``value_type`` may go where ``allowed`` types are expected.

    Lenient where R4 itself is: a primitive fits a primitive of the same JSON kind (string ->
    xhtml, code, id...; integer -> decimal; boolean only -> boolean),
    any specialisation fits its base (Age -> Quantity), anything fits an unknown type.
    """
    if value_type is None or not allowed:
        return True
    if is_primitive(value_type):
        return any(is_primitive(t) and _json_kind(t) == _json_kind(value_type) for t in allowed)
    if any(t in BACKBONE or t == "Resource" for t in allowed):
        return value_type in allowed or (("Resource" in allowed) and is_resource_type(value_type))
    chain = definitions.ancestors(value_type)
    return any(t in chain for t in allowed)


def _json_kind(type_name: str) -> str:
    """``string``, ``boolean`` or ``number`` (integer and decimal types) for primitive ``type_name``."""
    kind = definitions.primitive(type_name)["json"]
    return "number" if kind in ("integer", "decimal") else kind
