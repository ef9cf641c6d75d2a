"""Cross-check of ``structure.validate`` against the fhir.resources R4B models (tests/dev only).

Not on the write path: pydantic model validation is ~8x slower and R4B is not R4. Use
``reference_valid(resource)`` to get the R4B verdict, or ``None`` when R4B cannot judge
the resource the R4 way:

- resource types that exist only in R4 (MedicinalProduct*, EffectEvidenceSynthesis,
  RiskEvidenceSynthesis, Substance{NucleicAcid,Polymer,...}) have no R4B model;
- Evidence and EvidenceVariable were redesigned in R4B;
- R4B removed ``subjectCanonical`` (ActivityDefinition, PlanDefinition) and the ``Meta``
  choices (``valueMeta``, ``defaultValueMeta``, ``fixedMeta``, ``patternMeta``) and added
  ``CodeableReference`` / ``RatioRange`` choices.

Known leniencies of the R4B models (our validator rejects these, R4B accepts them), so a
cross-check must not count them as disagreements: ``{}`` / ``[]`` / ``{"id": ..}`` values,
codes outside required value sets, ``"true"`` or ``1`` for booleans, ``"1"`` / ``1.0`` for
integers, ``null`` items in primitive arrays without ``_x`` extensions, contained resources
without ``resourceType``, ids longer than 64 characters.
"""

from __future__ import annotations

from functools import lru_cache

from .structure import resource_types

R4B_REDESIGNED = frozenset({"Evidence", "EvidenceVariable"})
R4B_DIFFERENT_KEYS = frozenset({
    "subjectCanonical", "valueMeta", "defaultValueMeta", "fixedMeta", "patternMeta",
    "valueCodeableReference", "valueRatioRange", "defaultValueCodeableReference",
    "defaultValueRatioRange", "fixedCodeableReference", "fixedRatioRange",
    "patternCodeableReference", "patternRatioRange",
})


@lru_cache(maxsize=None)
def r4b_model(resource_type: str):
    """The fhir.resources R4B model class of ``resource_type``, or None if R4B lacks it."""
    from fhir.resources.R4B import get_fhir_model_class

    if resource_type in R4B_REDESIGNED:
        return None
    try:
        return get_fhir_model_class(resource_type)
    except (KeyError, ValueError, ImportError, AttributeError):
        return None


def r4_only_types() -> frozenset[str]:
    """R4 resource types that R4B cannot validate the R4 way."""
    return frozenset(t for t in resource_types() if r4b_model(t) is None)


def comparable(resource) -> bool:
    """Whether R4B judges ``resource`` (and every nested resource) like R4 would."""
    stack = [resource]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            rt = node.get("resourceType")
            if isinstance(rt, str) and rt in resource_types() and r4b_model(rt) is None:
                return False
            if not R4B_DIFFERENT_KEYS.isdisjoint(node):
                return False
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return True


def reference_errors(resource: dict) -> list[str]:
    """Problems the R4B model reports for ``resource`` ([] when it validates)."""
    rt = resource.get("resourceType") if isinstance(resource, dict) else None
    model = r4b_model(rt) if isinstance(rt, str) else None
    if model is None:
        return [f"no R4B model for resourceType {rt!r}"]
    try:
        model.model_validate(resource)
    except Exception as exc:  # pydantic ValidationError, or KeyError for unknown nested types
        errors = getattr(exc, "errors", None)
        if callable(errors):
            try:
                return [".".join(str(p) for p in e["loc"]) + ": " + e["msg"] for e in errors()]
            except Exception:  # noqa: BLE001 - some custom errors do not serialize
                pass
        return [f"{type(exc).__name__}: {exc}"]
    return []


def reference_valid(resource: dict) -> bool | None:
    """R4B's verdict on ``resource``; None when R4B cannot judge it the R4 way."""
    if not comparable(resource):
        return None
    return not reference_errors(resource)
