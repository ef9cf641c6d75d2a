"""Validation of a resource against the profiles of ours it claims (``meta.profile``).

``check(resource)`` is called by the write path for every version about to be written
(``fhir_server.write.check_profiles``: from ``new_version``, or by create/update/patch after their
access check). A resource that claims none of our profiles costs two dict
lookups; foreign profiles are ignored. A claimed profile of ours is compiled once from its
snapshot (``compile_profile``, cached) and checked:

- cardinality of every element (nested ones once per instance of their repeating parent) and of
  extension slices (counted by url), each slice's extension against its own definition;
- ``fixed[x]`` (equal) and ``pattern[x]`` (contained);
- required bindings to our ValueSets (code, Coding, CodeableConcept: one coding in the set);
  extensible ones: a coding of the set's systems must be one of its codes;
- reference targets (``Reference(Patient)``: a relative or absolute reference to another type);
- our invariants (``constraint.source`` is the profile; on the root element), evaluated with
  fhirpathpy.

All failures are collected into one ``OperationOutcomeError`` with status 422 (issue codes
``required``, ``structure``, ``value``, ``code-invalid``, ``invariant``), each naming its element
as FHIRPath with indexes (``Composition.section[2].title``); an invariant names the element of
its ``constraint-location`` extension. An unknown profile under our canonical base is 422 too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

from fhir_server.errors import OperationOutcomeError, issue
from profiles import CANONICAL, artifacts

OURS = f"{CANONICAL}/StructureDefinition/"
LOCATION = f"{OURS}constraint-location"
FHIR_SD = "http://hl7.org/fhir/StructureDefinition/"
TELEMED_REQUEST = f"{OURS}TelemedRequest"


@dataclass(slots=True)
class Node:
    """One element of a profile under its parent: where it sits in JSON and what it must hold."""

    path: str  # FHIRPath name: ServiceRequest.occurrence
    keys: tuple[str, ...]  # JSON keys: ("occurrenceDateTime", "occurrencePeriod", ...)
    min: int
    max: float
    fixed: tuple[str, object] | None = None  # ("fixed" | "pattern", value)
    codes: frozenset | None = None  # binding to one of our ValueSets: {(system, code)}
    value_set: str | None = None
    required: bool = True  # required: a value must be in the set; extensible: codings of its systems must
    targets: frozenset[str] | None = None  # allowed reference target types
    extension_url: str | None = None  # a slice of .extension: the url it counts
    children: list["Node"] = field(default_factory=list)


@dataclass(slots=True)
class Invariant:
    key: str
    human: str
    expression: str
    location: str
    run: object  # the compiled fhirpathpy expression


@dataclass(slots=True)
class Profile:
    url: str
    type: str
    root: Node
    invariants: list[Invariant]


def _max(value: str) -> float:
    return float("inf") if value == "*" else float(value)


def _upper(t: str) -> str:
    return t[0].upper() + t[1:]


@cache
def value_set_codes(url: str) -> frozenset[tuple[str | None, str]] | None:
    """The (system, code) pairs of one of our ValueSets (whole CodeSystems or listed concepts)."""
    vs = artifacts.by_url(url)
    if vs is None or vs["resourceType"] != "ValueSet":
        return None
    out = set()
    for include in vs.get("compose", {}).get("include", ()):
        system = include.get("system")
        if "concept" in include:
            out |= {(system, c["code"]) for c in include["concept"]}
            continue
        cs = artifacts.by_url(system or "")
        out |= {(system, c["code"]) for c in (cs or {}).get("concept", ())}
    return frozenset(out)


def _node(element: dict) -> Node:
    path = element["path"]
    name = path.rsplit(".", 1)[-1]
    types = [t["code"] for t in element.get("type", ())]
    if name.endswith("[x]"):
        base = name[:-3]
        keys = tuple(base + _upper(t) for t in types)
        path = path[:-3]
    else:
        keys = (name,)
    node = Node(path, keys, element.get("min", 0), _max(element.get("max", "*")))
    for key, value in element.items():
        if key.startswith(("fixed", "pattern")):
            node.fixed = ("fixed" if key.startswith("fixed") else "pattern", value)
    binding = element.get("binding") or {}
    if binding.get("strength") in ("required", "extensible") and artifacts.is_ours(binding.get("valueSet")):
        node.value_set = binding["valueSet"]
        node.codes = value_set_codes(binding["valueSet"])
        node.required = binding["strength"] == "required"
    targets = [p for t in element.get("type", ()) if t["code"] == "Reference" for p in t.get("targetProfile", ())]
    if targets and all(p.startswith(FHIR_SD) for p in targets) and f"{FHIR_SD}Resource" not in targets:
        node.targets = frozenset(p[len(FHIR_SD):] for p in targets)
    if element.get("sliceName"):
        profiles = [p for t in element.get("type", ()) for p in t.get("profile", ())]
        node.extension_url = profiles[0] if profiles else None
    return node


@cache
def compile_profile(url: str) -> Profile | None:
    """The checks of our StructureDefinition ``url`` (None when there is no such profile)."""
    import fhirpathpy
    from fhirpathpy.models import models

    sd = artifacts.by_url(url)
    if sd is None or sd["resourceType"] != "StructureDefinition":
        return None
    elements = sd["snapshot"]["element"]
    root = _node(elements[0])
    by_id = {elements[0]["id"]: root}
    invariants = []
    for element in elements:
        for c in element.get("constraint", ()) if element is elements[0] else ():  # ours are on the root
            if c.get("source") == url and c.get("severity") == "error":
                loc = next((e["valueString"] for e in c.get("extension", ()) if e["url"] == LOCATION), element["path"])
                invariants.append(Invariant(c["key"], c["human"], c["expression"], loc,
                                            fhirpathpy.compile(c["expression"], models["r4"])))
        if element is elements[0]:
            continue
        parent = by_id.get(element["id"].rsplit(".", 1)[0])
        if parent is None:  # below a slice we do not expand
            continue
        node = _node(element)
        if element.get("sliceName") and node.extension_url is None:
            continue  # a sub-extension of a complex extension: not checked (none of our profiles uses one)
        by_id[element["id"]] = node
        parent.children.append(node)
    return Profile(url, sd["type"], root, invariants)


# ------------------------------------------------------------------ checking


def _items(value) -> list:
    return value if isinstance(value, list) else [value]


def _contains(value, pattern) -> bool:
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(_contains(value.get(k), v) for k, v in pattern.items())
    if isinstance(pattern, list):
        return isinstance(value, list) and all(any(_contains(v, p) for v in value) for p in pattern)
    return value == pattern


def _codings(value) -> list:
    if not isinstance(value, dict):
        return []
    codings = value.get("coding") if "coding" in value or "text" in value else [value]
    return [c for c in codings or () if isinstance(c, dict)]


def _in_value_set(value, codes: frozenset, required: bool) -> bool:
    """Required: the code, the Coding or one coding of the CodeableConcept is in ``codes``.
    Extensible: every coding of a system ``codes`` draws from has a code of it."""
    if isinstance(value, str):
        return not required or any(code == value for _, code in codes)
    codings = _codings(value)
    if required:
        return any((c.get("system"), c.get("code")) in codes for c in codings)
    systems = {s for s, _ in codes}
    return all((c.get("system"), c.get("code")) in codes for c in codings if c.get("system") in systems)


def _target_type(reference: object) -> str | None:
    if not isinstance(reference, dict) or not isinstance(reference.get("reference"), str):
        return None
    ref = reference["reference"].split("/_history/", 1)[0]
    if ref.startswith(("#", "urn:")):
        return None
    parts = ref.rstrip("/").split("/")
    return parts[-2] if len(parts) >= 2 else None


class _Run:
    def __init__(self):
        self.issues: list[dict] = []

    def add(self, code: str, message: str, where: str) -> None:
        self.issues.append(issue(code, message, where))

    def node(self, node: Node, owner: dict, where: str) -> None:
        """Check ``node`` inside the JSON object ``owner`` (at ``where``)."""
        if node.extension_url is not None:
            items = [(i, e) for i, e in enumerate(_items(owner.get("extension") or []))
                     if isinstance(e, dict) and e.get("url") == node.extension_url]
            self.count(node, len(items), f"{where}.extension('{node.extension_url}')")
            ext = compile_profile(node.extension_url)
            for i, e in items:
                if ext is not None:
                    self.children(ext.root, e, f"{where}.extension[{i}]")
            return
        key = next((k for k in node.keys if k in owner), None)
        value = owner.get(key) if key else None
        items = _items(value) if value is not None else []
        at = f"{where}.{node.path.rsplit('.', 1)[-1]}"
        self.count(node, len(items), at)
        listed = isinstance(value, list)
        for i, item in enumerate(items):
            here = f"{at}[{i}]" if listed else at
            self.value(node, item, here)
            if node.children and isinstance(item, dict):
                self.children(node, item, here)

    def children(self, node: Node, owner: dict, where: str) -> None:
        for child in node.children:
            self.node(child, owner, where)

    def count(self, node: Node, n: int, at: str) -> None:
        if n < node.min:
            self.add("required", f"{at} is required by the profile (min {node.min}, found {n})", at)
        elif n > node.max:
            self.add("structure", f"{at} may occur at most {int(node.max)} time(s) (found {n})", at)

    def value(self, node: Node, item, at: str) -> None:
        if node.fixed is not None:
            kind, want = node.fixed
            if not (item == want if kind == "fixed" else _contains(item, want)):
                self.add("value", f"{at} must be {'' if kind == 'fixed' else 'like '}{want!r}", at)
        if node.codes is not None and not _in_value_set(item, node.codes, node.required):
            self.add("code-invalid", f"{at} must hold a code of the ValueSet {node.value_set}", at)
        if node.targets is not None:
            target = _target_type(item)
            if target is not None and target not in node.targets:
                self.add("structure", f"{at} must reference {' or '.join(sorted(node.targets))}, not {target}", at)


def issues_for(profile: Profile, resource: dict) -> list[dict]:
    run = _Run()
    run.children(profile.root, resource, profile.type)
    for inv in profile.invariants:
        try:
            failed = inv.run(resource) == [False]
        except Exception:  # noqa: BLE001 - a value the expression cannot evaluate fails it
            failed = True
        if failed:
            run.add("invariant", f"{inv.key}: {inv.human}", inv.location)
    return run.issues


def check(resource: dict) -> None:
    """422 when ``resource`` fails a profile of ours it claims (every issue of every profile)."""
    meta = resource.get("meta")
    if not meta:
        return
    claimed = meta.get("profile")
    if not claimed:
        return
    rtype = resource["resourceType"]
    found: list[dict] = []
    for n, url in enumerate(claimed):
        if not isinstance(url, str) or not url.startswith(OURS):
            continue
        profile = compile_profile(url.split("|", 1)[0])
        if profile is None or profile.type != rtype:
            what = "is no profile of this server" if profile is None else f"constrains {profile.type}"
            found.append(issue("processing", f"meta.profile {url} {what}", f"{rtype}.meta.profile[{n}]"))
            continue
        for i in issues_for(profile, resource):
            i["diagnostics"] = f"{url.rsplit('/', 1)[-1]}: {i['diagnostics']}"
            found.append(i)
    if found:
        raise OperationOutcomeError(found, status=422)


def claim(resource: dict, url: str) -> None:
    """Add ``url`` to the resource's meta.profile (in place) unless it is there."""
    meta = resource.setdefault("meta", {})
    profiles = meta.setdefault("profile", [])
    if url not in profiles:
        profiles.append(url)
