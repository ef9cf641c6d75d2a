"""FHIRPath Patch (http://hl7.org/fhir/R4/fhirpatch.html): apply a ``Parameters`` to a resource.

``apply_fhirpath_patch(resource, parameters)`` returns a new resource (the input is never
mutated). Each ``operation`` parameter has the parts ``type`` (add | insert | delete | replace |
move), ``path`` (FHIRPath) and, depending on the type, ``name``, ``value`` (a ``value[x]``, a
``resource``, or nested ``part``s that build an anonymous/complex value), ``index``, ``source``,
``destination``. Operations apply in order, each on the result of the previous one.

Semantics (per the spec and HL7's fhir-test-cases):

* the path must select exactly one element, except ``delete`` (nothing selected: no-op) and
  ``insert``/``move``, whose path selects the list (all items of one repeating element);
* ``add`` appends to a repeating element (creating the array) or sets a non-repeating one that
  must not exist yet; adding to a primitive goes to its ``_name`` (id/extension);
* choice elements are addressed by their FHIRPath name (``deceased``): the JSON name comes from
  the value's type (``valueBoolean`` -> ``deceasedBoolean``);
* objects and arrays left empty by ``delete`` are removed (FHIR JSON has no empty objects);
* ``replace`` of a primitive keeps its ``_name`` extensions unless the value part brings its own.

Errors: a malformed Parameters -> ``invalid`` (400) naming ``Parameters.parameter[i]...``; an
operation that cannot be applied -> ``unprocessable`` (422, code ``processing``) naming
``Parameters.parameter[i]``. Patching ``id``/``resourceType`` is not refused here: the
caller compares them with the URL.
"""

from __future__ import annotations

import copy
from typing import Any

from fhir_server.errors import invalid, unprocessable
from fhir_server.patch import r4_model
from fhir_server.patch.fhirpath_locate import (
    InvalidPath, Loc, LocateError, children, locate, split_steps,
)
from fhir_server.patch.fhirpath_params import Operation, Value, parse_parameters, parse_value

VERB = {"add": "adding", "insert": "inserting", "delete": "deleting", "replace": "replacing", "move": "moving"}


class PatchFailure(Exception):
    """An operation that is well-formed but cannot be applied (-> 422)."""


def apply_fhirpath_patch(resource: dict, parameters: dict) -> dict:
    ops = parse_parameters(parameters)
    work = copy.deepcopy(resource)
    for op in ops:
        try:
            HANDLERS[op.type](work, op)
        except InvalidPath as exc:
            raise invalid(f"{op.where}: {exc}", expression=f"{op.where}.part[{op.path_part}]") from exc
        except (LocateError, PatchFailure) as exc:
            raise unprocessable(f"{op.where} ({op.type} at '{op.path}'): {exc}", expression=op.where) from exc
    return work


# --------------------------------------------------------------------------- values
def _build(val: Value, base: str | None) -> Any:
    return copy.deepcopy(val.json) if val.parts is None else _build_object(val.parts, base)


def _build_object(parts: list, base: str | None) -> dict:
    """Nested parts -> a JSON object of type/backbone ``base`` (arrays where R4 repeats)."""
    out: dict = {}
    for sub in parts:
        val = parse_value("", sub)
        key, info = _member_key(base, sub["name"], val)
        repeating = info.repeating if info else key in out
        if key in out and not repeating:
            raise PatchFailure(f"'{sub['name']}' is given twice but does not repeat")
        _put(out, key, _build(val, _child_base(info, val.type)), val.side, repeating)
    return out


# --------------------------------------------------------------------------- helpers
def _member_key(base: str | None, name: str, val: Value) -> tuple[str, r4_model.ElementInfo | None]:
    """JSON key for element ``name`` holding ``val`` under ``base``; checks the value's type."""
    info = r4_model.element(base, name)
    if info is None:
        _, info, typ = r4_model.resolve_key(base, name)
        if info is None:
            if r4_model.is_known_base(base):
                raise PatchFailure(f"{base} has no element '{name}'")
            return name, None
        if val.type and not r4_model.compatible(val.type, (typ,)):
            raise PatchFailure(f"'{name}' cannot hold a {val.type}")
        return name, info
    if info.choice:
        if val.type is None:
            raise PatchFailure(f"'{name}' is a choice element: give the value as value[x] so its type is known")
        typ = next((t for t in info.types if r4_model.compatible(val.type, (t,))), None)
        if typ is None:
            raise PatchFailure(f"'{name}' cannot hold a {val.type} (allowed: {', '.join(info.types)})")
        return r4_model.choice_key(name, val.type if val.type in info.types else typ), info
    if not r4_model.compatible(val.type, info.types):
        raise PatchFailure(f"'{name}' cannot hold a {val.type} (expected {', '.join(info.types)})")
    return name, info


def _child_base(info: r4_model.ElementInfo | None, typ: str | None) -> str | None:
    """Base (type name or backbone path) the children of a new value are defined under."""
    if typ is None and info is not None and len(info.types) == 1:
        typ = info.types[0]
    if typ in r4_model.BACKBONE:
        return info.path if info is not None else None
    return typ


def _put(holder: dict, key: str, item: Any, side: Any, repeating: bool) -> None:
    if repeating:
        if key in holder and not isinstance(holder[key], list):
            holder[key] = [holder[key]]
        lst = holder.setdefault(key, [])
        lst.append(item)
        sides = holder.get("_" + key)
        if side is not None or isinstance(sides, list):
            sides = holder["_" + key] = (sides if isinstance(sides, list) else [])
            sides.extend([None] * (len(lst) - 1 - len(sides)))
            sides.append(copy.deepcopy(side))
        return
    if item is not None:
        holder[key] = item
    if side is not None:
        holder["_" + key] = copy.deepcopy(side)


def _one(resource: dict, op: Operation) -> Loc:
    locs = locate(resource, op.path)
    if not locs:
        raise PatchFailure(f"No content found at {op.path} when {VERB[op.type]}")
    if len(locs) > 1:
        raise PatchFailure(f"{op.path} selects {len(locs)} elements; a single one is required")
    return locs[0]


def _list(resource: dict, op: Operation) -> tuple[Loc | None, list]:
    """The repeating element ``op.path`` selects: (a member Loc, its array)."""
    locs = locate(resource, op.path)
    if not locs:
        return None, []
    first = locs[0]
    if any(l.container is not first.container or l.key != first.key or l.index is None for l in locs):
        raise PatchFailure(f"{op.path} does not select a list (the items of one repeating element)")
    lst = first.container.get(first.key)
    if not isinstance(lst, list):
        lst = first.container[first.key] = []
    sides = first.container.get("_" + first.key)
    if isinstance(sides, list):
        sides.extend([None] * (len(lst) - len(sides)))
    return first, lst


def _remove(loc: Loc) -> None:
    c, k = loc.container, loc.key
    if loc.index is None:
        c.pop(k, None)
        c.pop("_" + k, None)
        return
    for key in (k, "_" + k):
        seq = c.get(key)
        if isinstance(seq, list) and loc.index < len(seq):
            seq.pop(loc.index)
        if isinstance(seq, list) and all(x is None for x in seq):
            c.pop(key)


def _prune(owner: Loc | None) -> None:
    """Drop ``owner`` (and so on upwards) when a change left it empty."""
    while owner is not None and owner.container is not None:
        if owner.is_object:
            empty = not owner.value
        else:
            side = owner.sidecar()
            if side is not None and not side:
                _clear_sidecar(owner)
            empty = owner.value is None and not owner.sidecar()
        if not empty:
            return
        _remove(owner)
        owner = owner.parent


def _clear_sidecar(loc: Loc) -> None:
    skey = "_" + loc.key
    if loc.index is None:
        loc.container.pop(skey, None)
        return
    sides = loc.container[skey]
    sides[loc.index] = None
    if all(s is None for s in sides):
        loc.container.pop(skey)


# --------------------------------------------------------------------------- operations
def _add(resource: dict, op: Operation) -> None:
    target = _one(resource, op)
    if target.is_object:
        holder, base = target.value, target.base
    elif op.name in ("id", "extension"):
        holder, base = target.sidecar(create=True), "Element"
    else:
        raise PatchFailure(f"{op.path} is a primitive: only 'id' or 'extension' can be added to it")
    key, info = _member_key(base, op.name, op.value)
    repeating = info.repeating if info else isinstance(holder.get(key), list)
    if not repeating:
        taken = [c.key for c in children(target, op.name)] if target.is_object else []
        if key in holder or "_" + key in holder or taken:
            raise PatchFailure(f"'{op.name}' already has a value at {op.path} (not repeating: use replace)")
    item = _build(op.value, _child_base(info, op.value.type))
    _put(holder, key, item, op.value.side, repeating)


def _insert(resource: dict, op: Operation) -> None:
    index = op.ints["index"]
    first, lst = _list(resource, op)
    if first is None:
        holder, key, info = _new_list(resource, op)
        if index != 0:
            raise PatchFailure(f"index {index} is out of range: {op.path} is empty")
        lst = holder[key] = []
    else:
        holder, key, info = first.container, first.key, first.info
        if not 0 <= index <= len(lst):
            raise PatchFailure(f"index {index} is out of range 0..{len(lst)}")
    if info is not None and not r4_model.compatible(op.value.type, info.types):
        raise PatchFailure(f"{op.path} cannot hold a {op.value.type} (expected {', '.join(info.types)})")
    lst.insert(index, _build(op.value, _child_base(info, op.value.type)))
    sides = holder.get("_" + key)
    if isinstance(sides, list) or op.value.side is not None:
        sides = holder["_" + key] = sides if isinstance(sides, list) else [None] * (len(lst) - 1)
        sides.insert(index, copy.deepcopy(op.value.side))


def _new_list(resource: dict, op: Operation) -> tuple[dict, str, r4_model.ElementInfo | None]:
    """Where an absent list named by ``op.path`` (``<parent>.<name>``) would go."""
    steps = split_steps(op.path.strip())
    if not steps or len(steps) < 2 or steps[-1].args is not None or steps[-1].indexers:
        raise PatchFailure(f"No content found at {op.path} when {VERB[op.type]}")
    parent_path = ".".join(s.text for s in steps[:-1])
    parents = locate(resource, parent_path)
    if len(parents) != 1 or not parents[0].is_object:
        raise PatchFailure(f"No content found at {op.path} when {VERB[op.type]}")
    val = op.value or Value()
    key, info = _member_key(parents[0].base, steps[-1].name, val)
    if info is not None and not info.repeating:
        raise PatchFailure(f"{op.path} is not a repeating element")
    return parents[0].value, key, info


def _delete(resource: dict, op: Operation) -> None:
    locs = locate(resource, op.path)
    if not locs:
        return
    if len(locs) > 1:
        raise PatchFailure(f"{op.path} selects {len(locs)} elements; only a single one can be deleted")
    if locs[0].container is None:
        raise PatchFailure("the resource itself cannot be deleted")
    _remove(locs[0])
    _prune(locs[0].parent)


def _replace(resource: dict, op: Operation) -> None:
    loc = _one(resource, op)
    if loc.container is None:
        raise PatchFailure("the resource itself cannot be replaced")
    holder, key = loc.container, loc.key
    if loc.info is not None and loc.info.choice:
        new_key, info = _member_key(loc.parent.base if loc.parent else None, loc.name, op.value)
        typ = r4_model.resolve_key(loc.parent.base if loc.parent else None, new_key)[2]
    else:
        new_key, info, typ = key, loc.info, loc.type
        if info is not None and not r4_model.compatible(op.value.type, info.types):
            raise PatchFailure(f"{op.path} cannot hold a {op.value.type} (expected {', '.join(info.types)})")
    item = _build(op.value, _child_base(info, op.value.type or typ) if info else loc.base)
    if loc.index is not None:
        holder[key][loc.index] = item
        if op.value.side is not None:
            loc.sidecar(create=True)
            holder["_" + key][loc.index] = copy.deepcopy(op.value.side)
        return
    side = holder.pop("_" + key, None)
    holder.pop(key, None)
    holder[new_key] = item
    if op.value.side is not None:
        holder["_" + new_key] = copy.deepcopy(op.value.side)
    elif side is not None and r4_model.is_primitive(op.value.type) and not isinstance(item, dict):
        holder["_" + new_key] = side


def _move(resource: dict, op: Operation) -> None:
    first, lst = _list(resource, op)
    if first is None:
        raise PatchFailure(f"No content found at {op.path} when moving")
    src, dst = op.ints["source"], op.ints["destination"]
    for label, i in (("source", src), ("destination", dst)):
        if not 0 <= i < len(lst):
            raise PatchFailure(f"{label} {i} is out of range 0..{len(lst) - 1}")
    lst.insert(dst, lst.pop(src))
    sides = first.container.get("_" + first.key)
    if isinstance(sides, list):
        sides.insert(dst, sides.pop(src))


HANDLERS = {"add": _add, "insert": _insert, "delete": _delete, "replace": _replace, "move": _move}
