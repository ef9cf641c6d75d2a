"""Parse and check the ``Parameters`` of a FHIRPath Patch (structure only, no resource).

Anything malformed raises ``invalid`` (400) naming the offending ``Parameters.parameter[i]``
(``.name``, ``.part``, ``.part[j]``...). Rules: every parameter is an ``operation``; its parts
are named type/path/name/value/index/source/destination, each at most once; ``type`` and
``path`` are required, plus ``name``+``value`` for add, ``value``+``index`` for insert,
``value`` for replace, ``source``+``destination`` for move; index/source/destination are
integers; a value is exactly one of ``value[x]``, ``resource`` or nested ``part``s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fhir_server.errors import invalid
from fhir_server.patch import r4_model

PART_NAMES = ("type", "path", "name", "value", "index", "source", "destination")
REQUIRED = {
    "add": ("name", "value"), "insert": ("value", "index"), "delete": (),
    "replace": ("value",), "move": ("source", "destination"),
}
_INT_PARTS = {"insert": ("index",), "move": ("source", "destination")}


@dataclass
class Value:
    json: Any = None            # the JSON value (None for anonymous parts until built)
    type: str | None = None     # FHIR type when the part says it (valueX / resource)
    side: Any = None            # ``_valueX`` of a primitive value
    parts: list | None = None   # nested parts of an anonymous value (built at the target)


@dataclass
class Operation:
    pos: int
    type: str
    path: str
    path_part: int
    name: str | None = None
    value: Value | None = None
    ints: dict = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"Parameters.parameter[{self.pos}]"


def parse_parameters(parameters: Any) -> list[Operation]:
    if not isinstance(parameters, dict) or parameters.get("resourceType") != "Parameters":
        raise invalid("FHIRPath Patch body must be a Parameters resource", expression="Parameters")
    params = parameters.get("parameter", [])
    if not isinstance(params, list):
        raise invalid("Parameters.parameter must be an array", expression="Parameters.parameter")
    return [_parse_operation(i, p) for i, p in enumerate(params)]


def _parse_operation(i: int, param: Any) -> Operation:
    where = f"Parameters.parameter[{i}]"
    if not isinstance(param, dict) or param.get("name") != "operation":
        raise invalid(f"{where}: every parameter must be named 'operation'", expression=f"{where}.name")
    parts = param.get("part")
    if not isinstance(parts, list):
        raise invalid(f"{where}: an operation needs parts", expression=f"{where}.part")
    found: dict[str, tuple[int, dict]] = {}
    for j, part in enumerate(parts):
        name = part.get("name") if isinstance(part, dict) else None
        if name not in PART_NAMES:
            raise invalid(f"{where}.part[{j}]: unknown part {name!r} (expected one of {', '.join(PART_NAMES)})",
                          expression=f"{where}.part[{j}].name")
        if name in found:
            raise invalid(f"{where}.part[{j}]: part '{name}' is repeated", expression=f"{where}.part[{j}]")
        found[name] = (j, part)
    for req in ("type", "path"):
        if req not in found:
            raise invalid(f"{where}: missing part '{req}'", expression=f"{where}.part")
    op_type = _string(where, *found["type"])
    if op_type not in REQUIRED:
        raise invalid(f"{where}: unknown operation type {op_type!r} (expected add | insert | delete | replace | move)",
                      expression=f"{where}.part[{found['type'][0]}]")
    path = _string(where, *found["path"])
    for req in REQUIRED[op_type]:
        if req not in found:
            raise invalid(f"{where}: '{op_type}' needs a part '{req}'", expression=f"{where}.part")
    op = Operation(i, op_type, path, found["path"][0])
    if "name" in found and op_type == "add":
        op.name = _string(where, *found["name"])
    if "value" in found and op_type in ("add", "insert", "replace"):
        op.value = parse_value(f"{where}.part[{found['value'][0]}]", found["value"][1])
    for key in ("index", "source", "destination"):
        if key in found and key in _INT_PARTS.get(op_type, ()):
            op.ints[key] = _integer(where, *found[key])
    return op


def _value_keys(part: dict) -> list[str]:
    return [k for k in part if k.startswith("value") and len(k) > 5]


def _string(where: str, j: int, part: dict) -> str:
    keys = _value_keys(part)
    if len(keys) != 1 or not isinstance(part[keys[0]], str) or not part[keys[0]].strip():
        raise invalid(f"{where}.part[{j}]: part '{part['name']}' needs a non-empty string value",
                      expression=f"{where}.part[{j}]")
    return part[keys[0]]


def _integer(where: str, j: int, part: dict) -> int:
    keys = _value_keys(part)
    val = part[keys[0]] if len(keys) == 1 else None
    if not isinstance(val, int) or isinstance(val, bool):
        raise invalid(f"{where}.part[{j}]: part '{part['name']}' needs an integer value (valueInteger)",
                      expression=f"{where}.part[{j}]")
    return val


def parse_value(where: str, part: dict) -> Value:
    keys = _value_keys(part)
    sources = len(keys) + ("resource" in part) + ("part" in part)
    if sources != 1:
        raise invalid(f"{where}: a value part needs exactly one of value[x], resource or part",
                      expression=where)
    if keys:
        return Value(part[keys[0]], r4_model.type_of_value_key(keys[0]), part.get("_" + keys[0]))
    if "resource" in part:
        res = part["resource"]
        if not isinstance(res, dict) or not res.get("resourceType"):
            raise invalid(f"{where}: resource must be a resource", expression=f"{where}.resource")
        return Value(res, res["resourceType"])
    if not isinstance(part["part"], list) or not part["part"]:
        raise invalid(f"{where}: part must be a non-empty array", expression=f"{where}.part")
    for j, sub in enumerate(part["part"]):
        if not isinstance(sub, dict) or not isinstance(sub.get("name"), str) or not sub["name"]:
            raise invalid(f"{where}.part[{j}]: needs a name", expression=f"{where}.part[{j}]")
        parse_value(f"{where}.part[{j}]", sub)
    return Value(parts=part["part"])
