"""The slice of the FHIR R4 structure the FHIRPath Patch engine needs.

``r4_elements.json.gz`` is generated from the R4 StructureDefinitions by
``tests/fhir_server/patch/_convert_hl7_cases.py``. It maps each element path (choice elements
without ``[x]``) to ``<flags><types>``: flag ``*`` = repeating, ``?`` = choice (the JSON name is
the element name + the type's name with its first letter upper-cased); types are ``|``-separated
or ``#<path>`` for a content reference (e.g. ``Questionnaire.item.item``).
"""

from __future__ import annotations

import functools
import gzip
import json
import pathlib
from dataclasses import dataclass

_DATA = pathlib.Path(__file__).with_name("r4_elements.json.gz")
BACKBONE = ("BackboneElement", "Element")


@dataclass(frozen=True)
class ElementInfo:
    path: str               # definition path: the base for the children of a backbone element
    types: tuple[str, ...]
    repeating: bool
    choice: bool


@functools.cache
def _table() -> dict:
    return json.loads(gzip.decompress(_DATA.read_bytes()))


@functools.cache
def _known_bases() -> frozenset[str]:
    return frozenset(p.rsplit(".", 1)[0] for p in _table()["elements"])


def is_known_base(base: str | None) -> bool:
    """Whether ``base`` (a type name or a backbone element path) has known children."""
    return base is not None and base in _known_bases()


@functools.cache
def element(base: str | None, name: str) -> ElementInfo | None:
    """The definition of child ``name`` (FHIRPath name, no type suffix) of ``base``."""
    if base is None:
        return None
    spec = _table()["elements"].get(f"{base}.{name}")
    if spec is None:
        return None
    flags, body = spec[: len(spec) - len(spec.lstrip("*?"))], spec.lstrip("*?")
    if body.startswith("#"):
        return ElementInfo(body[1:], ("BackboneElement",), "*" in flags, False)
    return ElementInfo(f"{base}.{name}", tuple(body.split("|")), "*" in flags, "?" in flags)


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
    return type_name is not None and (type_name in _primitives() or type_name == "xhtml")


@functools.cache
def _primitives() -> frozenset[str]:
    return frozenset(_table()["primitives"])


def ancestors(type_name: str) -> list[str]:
    """``type_name`` and the types it specialises (``Age`` -> Age, Quantity, Element, Base)."""
    out = [type_name]
    parents = _table()["parents"]
    while out[-1] in parents and len(out) < 20:
        out.append(parents[out[-1]])
    return out


def is_resource_type(type_name: str | None) -> bool:
    return type_name is not None and "Resource" in ancestors(type_name)


def type_of_value_key(key: str) -> str | None:
    """The FHIR type named by a ``value[x]`` key of a Parameters part (``valueDate`` -> date)."""
    if not key.startswith("value") or len(key) <= 5:
        return None
    suffix = key[5:]
    low = suffix[0].lower() + suffix[1:]
    return low if low in _primitives() else suffix


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
    chain = ancestors(value_type)
    return any(t in chain for t in allowed)


def _json_kind(type_name: str) -> str:
    if type_name == "boolean":
        return "boolean"
    return "number" if type_name in ("integer", "positiveInt", "unsignedInt", "decimal", "integer64") else "string"
