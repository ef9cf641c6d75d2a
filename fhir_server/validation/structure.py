"""Write-path structural validation of FHIR R4 JSON resources.

``validate(resource)`` checks a parsed JSON resource against the R4 element definitions
(``definitions``, generated into ``_generated_structure.json.gz``): unknown
elements, JSON types, primitive formats, cardinality, empty values (ele-1), primitive
extensions (``_birthDate``, aligned ``_given`` arrays), choice types, contained / Bundle /
Parameters resources (checked by their own ``resourceType``), nesting depth and ``code``
elements with required bindings to enumerable value sets. It raises one
``OperationOutcomeError`` (status 422) carrying every issue found (at most ``MAX_ISSUES``).
Expressions are FHIRPath with indexes: ``Bundle.entry[2].resource.status``.

Issue codes: ``structure`` (unknown element, wrong JSON type, array vs single value, ``{}``,
``[]``, ``null``, two ``value[x]`` variants, unknown nested resourceType), ``required``
(missing min-1 element or resourceType), ``value`` (bad primitive format / range, ``""``),
``code-invalid`` (code outside a required value set), ``too-costly`` (nesting deeper than
``max_depth`` objects; validation stops there).

The definitions are compiled once into ``_Type`` objects whose ``elems`` map each JSON key to a
small tuple, so the hot loop is dict lookups, ``type() is`` tests and compiled regexes.
"""

from __future__ import annotations

import calendar
import math
import re
from collections.abc import Mapping
from functools import lru_cache

from ..errors import OperationOutcomeError, issue
from . import definitions

TABLE = definitions.TABLE  # the generated table the definitions are read from
MAX_ISSUES = 50
DEFAULT_MAX_DEPTH = 64

# element kinds (an element is the tuple (kind, check, sub, max_items, (type, binding)))
_S_STR, _S_CPLX, _S_NUM, _S_RES, _SKIP, _L_CPLX, _L_STR, _L_NUM, _L_RES = range(9)
_LIST_OF = {_S_STR: _L_STR, _S_CPLX: _L_CPLX, _S_NUM: _L_NUM, _S_RES: _L_RES}
_PRIMITIVE_KINDS = frozenset({_S_STR, _S_NUM, _L_STR, _L_NUM})


class _Full(Exception):
    """Raised when MAX_ISSUES issues were collected."""


class _TooDeep(Exception):
    def __init__(self, path: str):
        self.path = path


class _Type:
    __slots__ = ("name", "elems", "required", "req_choice", "choice_keys", "choice_group", "is_resource", "post")

    def __init__(self, name: str, is_resource: bool):
        self.name = name
        self.is_resource = is_resource
        self.elems: dict[str, tuple] = {}
        self.required: frozenset[str] = frozenset()
        self.req_choice: tuple = ()
        self.choice_keys: frozenset[str] | None = None
        self.choice_group: dict[str, tuple[str, str]] = {}
        self.post = False  # any required / choice check after the key loop


# ------------------------------------------------------------------ primitives


def _day_ok(v: str) -> bool:
    """Calendar check of a date prefix the regex accepted (e.g. rejects 2021-02-30)."""
    return int(v[8:10]) <= calendar.monthrange(int(v[0:4]), int(v[5:7]))[1]


def _date_check(rx):
    def check(v: str) -> bool:
        return rx(v) is not None and (len(v) < 10 or v[8:10] <= "28" or _day_ok(v))

    return check


_B64 = re.compile(r"[A-Za-z0-9+/=]+", re.ASCII).fullmatch
_WS = re.compile(r"\s+", re.ASCII)


def _b64_check(v: str) -> bool:
    if _B64(v) is None:
        v = _WS.sub("", v)
        if _B64(v) is None:
            return False
    return len(v) % 4 == 0


def _num_check(spec: Mapping):
    kind = spec["json"]
    if kind == "boolean":
        return lambda v: v is True or v is False
    if kind == "integer":
        lo, hi = spec["min"], spec["max"]
        return lambda v: type(v) is int and lo <= v <= hi
    return lambda v: type(v) is int or (type(v) is float and math.isfinite(v))


def _str_check(name: str, spec: Mapping):
    if name == "base64Binary":
        return _b64_check
    regex = spec["regex"] or r"[\s\S]+"
    if spec.get("maxLength") and regex.endswith("]+"):
        regex = f"{regex[:-1]}{{1,{spec['maxLength']}}}"
    rx = re.compile(regex, re.ASCII).fullmatch
    return _date_check(rx) if name in ("date", "dateTime", "instant") else rx


# ------------------------------------------------------------------ compile


@lru_cache(maxsize=1)
def _compiled() -> tuple[dict[str, _Type], dict[str, Mapping], _Type]:
    prims = {n: definitions.primitive(n) for n in sorted(definitions.primitive_types())}
    checks = {n: (_S_NUM, _num_check(s)) if s["json"] != "string" else (_S_STR, _str_check(n, s)) for n, s in prims.items()}
    tdefs = definitions.complex_types()
    types = {n: _Type(n, d.kind == "resource") for n, d in tdefs.items()}

    def element(code: str, is_list: bool, maxn, binding) -> tuple:
        check, sub = None, None
        if code in checks:
            kind, check = checks[code]
            if binding:
                check = frozenset(binding).__contains__
        elif code == "Resource" or tdefs[code].kind == "resource":
            kind, sub = _S_RES, None if code == "Resource" else code
        else:
            kind, sub = _S_CPLX, types[code]
        return (_LIST_OF[kind] if is_list else kind, check, sub, maxn, (code, frozenset(binding or ())))

    for name, d in tdefs.items():
        t = types[name]
        required, req_choice, choice_keys = set(), [], set()
        for ename, spec in d.elements.items():
            is_list = spec.repeating
            maxn = spec.max if is_list else None
            if spec.choice:
                keys = set()
                for code in spec.types:
                    key = spec.json_key(code)
                    t.elems[key] = element(code, is_list, maxn, None)
                    keys.add(key)
                    t.choice_group[key] = (ename, key)
                    if code in checks:
                        keys.add("_" + key)
                        t.choice_group["_" + key] = (ename, key)
                choice_keys |= keys
                if spec.min >= 1:
                    req_choice.append((ename, frozenset(keys)))
            else:  # a profiled element is checked against its profile (SimpleQuantity: no comparator)
                t.elems[ename] = element(spec.profile or spec.types[0], is_list, maxn, spec.binding)
                if spec.min >= 1:
                    required.add(ename)
        if t.is_resource:
            t.elems["resourceType"] = (_SKIP, None, None, None, None)
        t.required = frozenset(required)
        t.req_choice = tuple(req_choice)
        t.choice_keys = frozenset(choice_keys) if choice_keys else None
        t.post = bool(required or req_choice or choice_keys)
    resources = {n: types[n] for n in sorted(definitions.resource_types())}
    return resources, prims, types["Element"]


def resource_types() -> frozenset[str]:
    """The concrete R4 resource types known to the validator."""
    return definitions.resource_types()


# ------------------------------------------------------------------ hot path


def _check(obj: dict, t: _Type, path: str, left: int, issues: list) -> None:
    if left <= 0:
        raise _TooDeep(path)
    if len(obj) < 2:
        if not obj:
            return _add(issues, "structure", "Empty object is not allowed (ele-1)", path)
        if "id" in obj and not t.is_resource:
            _add(issues, "structure", "Element has only an id and no value or children (ele-1)", path)
    elems = t.elems
    for key, val in obj.items():
        e = elems.get(key)
        if e is None:
            _other(obj, key, val, t, path, left, issues)
            continue
        kind = e[0]
        if kind == _S_STR:
            if type(val) is not str or not val or not e[1](val):
                _prim_error(val, e, path + "." + key, issues)
        elif kind == _S_CPLX:
            if type(val) is dict:
                _check(val, e[2], path + "." + key, left - 1, issues)
            else:
                _not_object(val, path + "." + key, e[2].name, issues)
        elif kind == _S_NUM:
            if not e[1](val):
                _prim_error(val, e, path + "." + key, issues)
        elif kind == _S_RES:
            _resource(val, e[2], path + "." + key, left - 1, issues)
        elif kind == _SKIP:
            pass
        elif type(val) is not list or not val or (e[3] is not None and len(val) > e[3]):
            _bad_list(key, val, e, path, issues)
        elif kind == _L_CPLX:
            sub = e[2]
            base = path + "." + key
            for i, v in enumerate(val):
                if type(v) is dict:
                    _check(v, sub, f"{base}[{i}]", left - 1, issues)
                else:
                    _not_object(v, f"{base}[{i}]", sub.name, issues)
        elif kind == _L_STR:
            check = e[1]
            for v in val:
                if type(v) is not str or not v or not check(v):
                    _prim_list(obj, key, val, e, path, issues)
                    break
        elif kind == _L_NUM:
            check = e[1]
            for v in val:
                if not check(v):
                    _prim_list(obj, key, val, e, path, issues)
                    break
        else:
            base = path + "." + key
            for i, v in enumerate(val):
                _resource(v, e[2], f"{base}[{i}]", left - 1, issues)
    if t.post:
        if t.required and not obj.keys() >= t.required:
            for name in sorted(t.required):
                if name not in obj and "_" + name not in obj:
                    _add(issues, "required", f"Missing required element '{name}' (min 1)", f"{path}.{name}")
        for name, keys in t.req_choice:
            if keys.isdisjoint(obj):
                _add(issues, "required", f"Missing required element '{name}[x]' (min 1)", f"{path}.{name}")
        if t.choice_keys is not None:
            hits = t.choice_keys.intersection(obj)
            if len(hits) > 1:
                _choice_dups(hits, t, path, issues)


def _resource(v, fixed: str | None, path: str, left: int, issues: list) -> None:
    if type(v) is not dict:
        return _not_object(v, path, fixed or "Resource", issues)
    rt = v.get("resourceType")
    if rt is None:
        return _add(issues, "required", "Missing resourceType in nested resource", path)
    t = _compiled()[0].get(rt) if type(rt) is str else None
    if t is None:
        return _add(issues, "structure", f"Unknown resourceType {rt!r}", path)
    if fixed is not None and rt != fixed:
        return _add(issues, "structure", f"Expected resourceType {fixed}, got {rt}", path)
    _check(v, t, path, left, issues)


# ------------------------------------------------------------------ slow paths (errors)


def _add(issues: list, code: str, diagnostics: str, expression: str) -> None:
    issues.append(issue(code, diagnostics, expression))
    if len(issues) >= MAX_ISSUES:
        raise _Full


def _jtype(v) -> str:
    if v is None:
        return "null"
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}.get(type(v), type(v).__name__)


def _not_object(v, path: str, tname: str, issues: list) -> None:
    _add(issues, "structure", f"Expected a JSON object ({tname}), got {_jtype(v)}", path)


def _bad_list(key: str, val, e: tuple, path: str, issues: list) -> None:
    p = f"{path}.{key}"
    if type(val) is not list:
        _add(issues, "structure", f"Element '{key}' has max cardinality {e[3] or '*'}: expected an array, got {_jtype(val)}", p)
    elif not val:
        _add(issues, "structure", "Empty array is not allowed (ele-1)", p)
    else:
        _add(issues, "structure", f"Element '{key}' has {len(val)} items, more than its max cardinality {e[3]}", p)


def _prim_error(v, e: tuple, path: str, issues: list) -> None:
    """Say why ``v`` is not a valid value of the primitive element ``e``."""
    ptype, binding = e[4]
    prims = _compiled()[1]
    spec = prims[ptype]
    if v is None:
        return _add(issues, "structure", "null is not allowed here", path)
    if type(v) is list:
        return _add(issues, "structure", f"Expected a single {ptype} value, got an array (max cardinality 1)", path)
    if spec["json"] == "string":
        if type(v) is not str:
            return _add(issues, "structure", f"Expected a JSON string for {ptype}, got {_jtype(v)}", path)
        if not v:
            return _add(issues, "value", "Empty string is not allowed (ele-1)", path)
        if binding:
            shown = ", ".join(sorted(binding)) if len(binding) <= 20 else f"{len(binding)} codes"
            return _add(issues, "code-invalid", f"Code {v!r} is not in the required value set ({shown})", path)
        if spec.get("maxLength") and len(v) > spec["maxLength"]:
            return _add(issues, "value", f"String longer than {spec['maxLength']} characters", path)
        return _add(issues, "value", f"Invalid {ptype} value {v[:80]!r}", path)
    if spec["json"] == "boolean":
        return _add(issues, "structure", f"Expected JSON true/false for boolean, got {_jtype(v)}", path)
    if spec["json"] == "integer":
        if type(v) is not int:
            return _add(issues, "structure", f"Expected a JSON integer for {ptype}, got {_jtype(v)} {v!r}"[:200], path)
        return _add(issues, "value", f"Value {v} is out of range for {ptype} [{spec['min']}, {spec['max']}]", path)
    if type(v) is float:
        return _add(issues, "value", f"Invalid decimal value {v!r}", path)
    _add(issues, "structure", f"Expected a JSON number for decimal, got {_jtype(v)}", path)


def _prim_list(obj: dict, key: str, val: list, e: tuple, path: str, issues: list) -> None:
    ext = obj.get("_" + key)
    for i, v in enumerate(val):
        if v is None:
            if type(ext) is list and i < len(ext) and type(ext[i]) is dict:
                continue
            _add(issues, "structure", f"null in '{key}' without a matching '_{key}' extension", f"{path}.{key}[{i}]")
        elif e[0] == _L_NUM:
            if not e[1](v):
                _prim_error(v, e, f"{path}.{key}[{i}]", issues)
        elif type(v) is not str or not v or not e[1](v):
            _prim_error(v, e, f"{path}.{key}[{i}]", issues)


def _other(obj: dict, key: str, val, t: _Type, path: str, left: int, issues: list) -> None:
    """A key with no element: a primitive extension ``_x`` or an unknown element."""
    if key[:1] == "_":
        e = t.elems.get(key[1:])
        if e is not None and e[0] in _PRIMITIVE_KINDS:
            return _prim_ext(obj, key[1:], val, e[0] >= _L_CPLX, path, left, issues)
    if key == "resourceType":
        return _add(issues, "structure", f"resourceType is not allowed in {t.name}", f"{path}.{key}")
    _add(issues, "structure", f"{UNKNOWN_ELEMENT} '{key}' in {t.name}", f"{path}.{key}")


def _prim_ext(obj: dict, base: str, val, is_list: bool, path: str, left: int, issues: list) -> None:
    element = _compiled()[2]
    p = f"{path}.{base}"
    if not is_list:
        if type(val) is dict:
            return _check(val, element, p, left - 1, issues)
        return _add(issues, "structure", f"'_{base}' must be a JSON object (id/extension), got {_jtype(val)}", p)
    if type(val) is not list or not val:
        return _add(issues, "structure", f"'_{base}' must be a non-empty array aligned with '{base}'", p)
    values = obj.get(base)
    if type(values) is list and len(values) != len(val):
        _add(issues, "structure", f"'_{base}' has {len(val)} items but '{base}' has {len(values)}", p)
    if all(x is None for x in val):
        return _add(issues, "structure", f"'_{base}' contains only nulls", p)
    for i, x in enumerate(val):
        if type(x) is dict:
            _check(x, element, f"{p}[{i}]", left - 1, issues)
        elif x is not None:
            _add(issues, "structure", f"'_{base}' items must be objects or null, got {_jtype(x)}", f"{p}[{i}]")


def _choice_dups(hits: set, t: _Type, path: str, issues: list) -> None:
    groups: dict[str, set[str]] = {}
    for k in hits:
        name, variant = t.choice_group[k]
        groups.setdefault(name, set()).add(variant)
    for name in sorted(groups):
        if len(groups[name]) > 1:
            keys = ", ".join(sorted(groups[name]))
            _add(issues, "structure", f"Only one of {name}[x] is allowed, found {keys}", f"{path}.{name}")


# ------------------------------------------------------------------ entry point


UNKNOWN_ELEMENT = "Unknown element"


def validate(resource: dict, max_depth: int = DEFAULT_MAX_DEPTH, allow_unknown: bool = False) -> None:
    """Raise ``OperationOutcomeError`` (422) listing every structural problem of ``resource``.

    With ``allow_unknown`` elements the R4 definitions do not know are accepted as sent.
    """
    try:
        _validate(resource, max_depth)
    except OperationOutcomeError as exc:
        if allow_unknown:
            exc.issues = [i for i in exc.issues if not i.get("diagnostics", "").startswith(UNKNOWN_ELEMENT)]
            if not exc.issues:
                return
        raise


def _validate(resource: dict, max_depth: int) -> None:
    if type(resource) is not dict:
        raise OperationOutcomeError([issue("structure", f"A resource must be a JSON object, got {_jtype(resource)}")], status=400)
    issues: list[dict] = []
    rt = resource.get("resourceType")
    t = _compiled()[0].get(rt) if type(rt) is str else None
    if rt is None:
        issues.append(issue("required", "Missing resourceType", "resourceType"))
    elif t is None:
        issues.append(issue("structure", f"Unknown resourceType {rt!r}", "resourceType"))
    else:
        try:
            _check(resource, t, rt, max_depth, issues)
        except _Full:
            issues.append(issue("too-costly", f"Validation stopped after {MAX_ISSUES} issues", severity="warning"))
        except _TooDeep as deep:
            issues.append(issue("too-costly", f"JSON nesting deeper than {max_depth} levels", deep.path))
    if issues:
        raise OperationOutcomeError(issues, status=422)
