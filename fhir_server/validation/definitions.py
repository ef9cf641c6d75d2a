"""The R4 element definitions: the server's one copy of the FHIR R4 structure.

``_generated_structure.json.gz`` (written by ``_generate_structure`` from the R4
StructureDefinitions) is loaded once, here; the structural validator (``structure``), the
FHIRPath Patch engine (``fhir_server.patch.r4_model``) and the search-index compiler
(``fhir_server.search.params.element_types``) read it through this small API:

* ``type_def(name)``: a data type, resource or backbone element (named by its path,
  ``Observation.component``), or a primitive type (no elements), or None;
* ``element(owner, name)``: child ``name`` (FHIRPath name; a choice element without ``[x]``)
  of type or backbone path ``owner``;
* ``complex_types()``, ``primitive_types()``, ``primitive(name)``, ``resource_types()``;
* ``ancestors(name)``: the type and the types it specialises or constrains.

Definitions are built lazily per type and cached; nothing here is mutable.
"""

from __future__ import annotations

import functools
import gzip
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple

TABLE = Path(__file__).with_name("_generated_structure.json.gz")


class ElementDef(NamedTuple):  # a tuple: cheap to build ~10k of (a frozen dataclass is 3x slower)
    name: str                   # FHIRPath name: ``value`` for ``value[x]``
    types: tuple[str, ...]      # R4 type codes; a backbone element: its backbone type (its path)
    min: int
    max: int | None             # None: unbounded (``*``)
    choice: bool = False        # JSON key = name + type with its first letter upper-cased
    content_ref: str | None = None      # backbone type a contentReference points to (== types[0])
    profile: str | None = None          # constrained type the element is profiled to (SimpleQuantity)
    binding: tuple[str, ...] | None = None  # codes of a required, enumerable value set

    @property
    def repeating(self) -> bool:
        return self.max is None or self.max > 1

    def json_key(self, type_name: str) -> str:
        """JSON property holding a ``type_name`` value (``deceased`` + ``boolean`` -> ``deceasedBoolean``)."""
        return self.name + type_name[0].upper() + type_name[1:] if self.choice else self.name


@dataclass(frozen=True, slots=True)
class TypeDef:
    name: str
    kind: str                   # primitive-type | complex-type | resource | backbone
    abstract: bool
    base: str | None            # specialised / constrained type; a backbone's declared type
    elements: Mapping[str, ElementDef]


@functools.cache
def _table() -> dict:
    with gzip.open(TABLE, "rb") as f:
        return json.loads(f.read())


def _element(name: str, spec: dict) -> ElementDef:
    mx, binding = spec["max"], spec.get("binding")
    return ElementDef(
        name, tuple(spec["types"]), spec["min"], None if mx == "*" else mx, spec.get("choice", False),
        spec.get("contentRef"), spec.get("profile"), tuple(binding) if binding else None,
    )


@functools.cache
def type_def(name: str | None) -> TypeDef | None:
    """The definition of type (or backbone path) ``name``, or None when R4 has no such type."""
    table = _table()
    spec = table["types"].get(name)
    if spec is not None:
        elements = {n: _element(n, e) for n, e in spec["elements"].items()}
        return TypeDef(name, spec["kind"], spec["abstract"], spec.get("base"), MappingProxyType(elements))
    prim = table["primitives"].get(name)
    if prim is not None:
        return TypeDef(name, "primitive-type", False, prim.get("base"), MappingProxyType({}))
    return None


def element(owner: str | None, name: str) -> ElementDef | None:
    """Child ``name`` (no ``[x]``) of type or backbone path ``owner``, or None."""
    t = type_def(owner)
    return t.elements.get(name) if t is not None else None


@functools.cache
def complex_types() -> Mapping[str, TypeDef]:
    """Every data type, resource (abstract ones too) and backbone type, by name."""
    return MappingProxyType({n: type_def(n) for n in _table()["types"]})


@functools.cache
def primitive_types() -> frozenset[str]:
    return frozenset(_table()["primitives"])


def primitive(name: str) -> Mapping | None:
    """Value constraints of primitive ``name``: ``json`` kind, ``regex``, ``maxLength``, ``min``/``max``."""
    spec = _table()["primitives"].get(name)
    return MappingProxyType(spec) if spec is not None else None


@functools.cache
def resource_types() -> frozenset[str]:
    """The concrete R4 resource types."""
    return frozenset(n for n, t in _table()["types"].items() if t["kind"] == "resource" and not t["abstract"])


@functools.cache
def ancestors(name: str) -> tuple[str, ...]:
    """``name`` and the types it derives from (``Age`` -> Age, Quantity, Element); ``(name,)`` if unknown."""
    out = [name]
    t = type_def(name)
    while t is not None and t.base is not None:
        out.append(t.base)
        t = type_def(t.base)
    return tuple(out)
