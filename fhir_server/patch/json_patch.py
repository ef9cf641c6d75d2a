"""JSON Patch (RFC 6902) for the PATCH interaction, on top of the ``jsonpatch`` library.

``apply_json_patch(resource, operations)`` returns a new resource; the input is never mutated.

Errors (``OperationOutcomeError``):

* a malformed patch document - not an array, an operation that is not an object, an unknown
  ``op``, a missing/non-string ``path``/``from``, a bad JSON pointer, a missing ``value`` -
  -> ``invalid`` (400), expression ``Patch[i]`` naming the operation;
* a well-formed operation that cannot be applied - the path (or ``from``) does not exist, an
  array index out of range, a failing ``test`` - -> ``unprocessable`` (422, code
  ``processing``), expression ``Patch[i]``, the JSON pointer in the diagnostics.

``test`` compares JSON values strictly (``1`` is neither ``true`` nor ``"1"``). Changing
``id`` or ``resourceType`` is not refused here: the caller compares them with the request URL.
Unrecognised members of an operation are ignored (RFC 6902 section 4).
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import jsonpointer

from fhir_server.errors import invalid, unprocessable

NEEDS = {
    "add": ("path", "value"), "remove": ("path",), "replace": ("path", "value"),
    "move": ("from", "path"), "copy": ("from", "path"), "test": ("path", "value"),
}


def apply_json_patch(resource: dict, operations: Any) -> dict:
    if not isinstance(operations, list):
        raise invalid("JSON Patch body must be an array of operations", expression="Patch")
    for i, op in enumerate(operations):
        _check(i, op)
    doc = copy.deepcopy(resource)
    for i, op in enumerate(copy.deepcopy(operations)):  # values must not alias the caller's patch
        where = f"Patch[{i}]"
        desc = f"{where} ({op['op']} {op['path']})"
        if op["op"] == "test":
            _test(doc, op, desc, where)
            continue
        try:
            doc = jsonpatch.apply_patch(doc, [op], in_place=True)
        except jsonpatch.JsonPatchTestFailed as exc:  # pragma: no cover - tests handled above
            raise unprocessable(f"{desc}: test failed: {exc}", expression=where) from exc
        except (jsonpatch.JsonPatchConflict, jsonpointer.JsonPointerException, IndexError, KeyError) as exc:
            raise unprocessable(f"{desc}: {exc or 'target does not exist'}", expression=where) from exc
        except jsonpatch.InvalidJsonPatch as exc:
            raise invalid(f"{desc}: {exc}", expression=where) from exc
    return doc


def _check(i: int, op: Any) -> None:
    where = f"Patch[{i}]"
    if not isinstance(op, dict):
        raise invalid(f"{where}: an operation must be an object", expression=where)
    name = op.get("op")
    if name not in NEEDS:
        raise invalid(f"{where}: unknown op {name!r} (expected one of {', '.join(NEEDS)})", expression=where)
    for member in NEEDS[name]:
        if member not in op:
            raise invalid(f"{where}: '{name}' needs '{member}'", expression=where)
        if member in ("path", "from"):
            pointer = op[member]
            if not isinstance(pointer, str):
                raise invalid(f"{where}: '{member}' must be a JSON pointer string", expression=where)
            try:
                jsonpointer.JsonPointer(pointer)
            except jsonpointer.JsonPointerException as exc:
                raise invalid(f"{where}: invalid JSON pointer {pointer!r}: {exc}", expression=where) from exc
    if name == "move" and op["path"].startswith(op["from"] + "/"):
        raise invalid(f"{where}: cannot move {op['from']} into one of its own children", expression=where)


def _test(doc: Any, op: dict, desc: str, where: str) -> None:
    try:
        actual = jsonpointer.resolve_pointer(doc, op["path"])
    except (jsonpointer.JsonPointerException, IndexError, KeyError) as exc:
        raise unprocessable(f"{desc}: {exc}", expression=where) from exc
    if not _same(actual, op["value"]):
        raise unprocessable(f"{desc}: test failed: value is {actual!r}, not {op['value']!r}", expression=where)


def _same(a: Any, b: Any) -> bool:
    """JSON equality: numbers by value, but booleans, numbers and strings never mix."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b
