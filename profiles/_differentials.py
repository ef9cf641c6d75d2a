"""The hand-written differentials of our profiles and extensions (development time only).

``_generate_snapshots`` turns each entry of ``PROFILES`` and ``EXTENSIONS`` into a published
``structuredefinition-<Name>.json`` (header, this differential, and a snapshot merged from the R4
base definition); the server reads only the generated JSON. Edit here, then run
``python -m profiles._generate_snapshots``.

Rules of a TelemedRequest that the regulations ask of a *submitted* request are invariants that
hold once ``status`` is not ``draft`` (SPB-D: a draft may be incomplete and finished later);
``$submit`` writes the request ``active``, so an incomplete draft is refused there. Each
invariant carries the element it is about (extension ``LOCATION``): the validator names it as
the OperationOutcome expression.
"""

from __future__ import annotations

from profiles import CANONICAL

SD = f"{CANONICAL}/StructureDefinition"
CS = f"{CANONICAL}/CodeSystem"
VS = f"{CANONICAL}/ValueSet"
LOCATION = f"{SD}/constraint-location"
FHIR_SD = "http://hl7.org/fhir/StructureDefinition"

# Extension URLs (published as StructureDefinitions too).
REMAINING = f"{SD}/consult-deadline-remaining"
MODE = f"{SD}/consultation-mode"
TREATED_SINCE = f"{SD}/treated-since"
AGE_CATEGORY = f"{SD}/age-category"


def el(path: str, **kw) -> dict:
    """A differential element on ``path`` (no slice)."""
    return {"id": path, "path": path, **kw}


def refs(*types: str) -> list[dict]:
    return [{"code": "Reference", "targetProfile": [f"{FHIR_SD}/{t}" for t in types]}]


def required(value_set: str, description: str, strength: str = "required") -> dict:
    return {"strength": strength, "description": description, "valueSet": f"{VS}/{value_set}"}


def invariant(profile: str, key: str, human: str, expression: str, location: str) -> dict:
    return {"extension": [{"url": LOCATION, "valueString": location}], "key": key, "severity": "error",
            "human": human, "expression": expression, "source": f"{SD}/{profile}"}


def extensions(root: str, *slices: tuple[str, str, int, str, str]) -> list[dict]:
    """Slicing of ``root.extension`` by url and one slice per (name, url, min, max, short)."""
    out = [el(f"{root}.extension", slicing={"discriminator": [{"type": "value", "path": "url"}], "rules": "open"})]
    for name, url, lo, hi, short in slices:
        out.append({"id": f"{root}.extension:{name}", "path": f"{root}.extension", "sliceName": name, "short": short,
                    "min": lo, "max": hi, "type": [{"code": "Extension", "profile": [url]}]})
    return out


def _submitted(expression: str) -> str:
    return f"status = 'draft' or ({expression})"


TR = "TelemedRequest"
TELEMED_REQUEST = {
    "name": TR, "type": "ServiceRequest", "title": "Teleconsultation request",
    "description": "A request for a teleconsultation (form 001/tm, UA-4): its kind, form of care (RU-14), purpose "
                   "(RU-2), mode (RU-15), reason, time, patient record summary and wanted specialty (CN-3.1), "
                   "service profile, date since which the patient is treated, linked episodes, referral and "
                   "attached data (KZ-2, RU-29, UA-VI.3). A draft may be incomplete (SPB-D): the content rules "
                   "hold once the request is submitted (status other than draft).",
    "elements": [
        el("ServiceRequest", constraint=[
            invariant(TR, "tr-1", "A submitted request has a form of care: priority routine, urgent or stat (RU-14)",
                      _submitted("priority.exists()"), "ServiceRequest.priority"),
            invariant(TR, "tr-2", "A submitted request states its purpose: a reasonCode from consultation-purpose "
                                  "(RU-2, CN-3.1)",
                      _submitted(f"reasonCode.coding.where(system = '{CS}/consultation-purpose').exists()"),
                      "ServiceRequest.reasonCode"),
            invariant(TR, "tr-3", "A submitted request states its reason: reasonCode.text, reasonReference or a note "
                                  "(CN-3.1)",
                      _submitted("reasonCode.text.exists() or reasonReference.exists() or note.exists()"),
                      "ServiceRequest.reasonCode.text"),
            invariant(TR, "tr-4", "A submitted request states the wanted time: occurrence[x] (CN-3.1)",
                      _submitted("occurrence.exists()"), "ServiceRequest.occurrence"),
            invariant(TR, "tr-5", "A submitted request names the wanted consultant's specialty and title: "
                                  "performerType (CN-3.1)",
                      _submitted("performerType.exists()"), "ServiceRequest.performerType"),
            invariant(TR, "tr-6", "A submitted request carries a summary of the patient record and the clinical "
                                  "data: supportingInfo (CN-3.1, RU-29, UA-VI.3, KZ-2)",
                      _submitted("supportingInfo.exists()"), "ServiceRequest.supportingInfo"),
            invariant(TR, "tr-7", "A submitted request names the service profile: code (KZ-2)",
                      _submitted("code.exists()"), "ServiceRequest.code"),
            invariant(TR, "tr-8", "A submitted request states the date since which the patient is treated (KZ-2)",
                      _submitted(f"extension('{TREATED_SINCE}').exists()"),
                      f"ServiceRequest.extension('{TREATED_SINCE}')"),
        ]),
        *extensions("ServiceRequest",
                    ("mode", MODE, 0, "1", "realtime | deferred | mixed (RU-15)"),
                    ("treatedSince", TREATED_SINCE, 0, "1", "Date since which the patient is treated (KZ-2)"),
                    ("ageCategory", AGE_CATEGORY, 0, "1", "Age category of the service profile (KZ-2)")),
        el("ServiceRequest.category", min=1, short="The consultation kind",
           binding=required("consultation-kind", "doctor-doctor | doctor-patient | diagnostic-result | consilium")),
        el("ServiceRequest.priority", short="Form of care: routine (planned) | urgent | stat (emergency) (RU-14)",
           binding=required("form-of-care-priority", "The request priorities that name a form of care")),
        el("ServiceRequest.code", short="Service profile: consultation type, nomenclature service (KZ-2)"),
        el("ServiceRequest.subject", type=refs("Patient")),
        el("ServiceRequest.occurrence[x]", short="Wanted time: a booked session or the period of the answer (CN-3.1)"),
        el("ServiceRequest.requester", min=1, type=refs("Practitioner", "PractitionerRole")),
        el("ServiceRequest.performerType", short="Wanted consultant's specialty and professional title (CN-3.1)"),
        # extensible: a draft's reason may be text only; tr-2 asks a submitted one for the purpose code.
        el("ServiceRequest.reasonCode", short="Purpose (RU-2); its text: the reason (CN-3.1)",
           binding=required("consultation-purpose", "Purpose of the consultation (RU-2)", "extensible")),
        el("ServiceRequest.supportingInfo",
           short="Record summary, lab and instrumental results, images, linked EpisodeOfCare, referral, files "
                 "(CN-3.1, KZ-2, RU-29, UA-VI.3)"),
    ],
}

CT = "ConsultTask"
CONSULT_TASK = {
    "name": CT, "type": "Task", "title": "Consultation work item",
    "description": "The Task that ServiceRequest/$submit creates for a TelemedRequest and that the consultation "
                   "operations move through acceptance, transfer, information requests, refusal and cancellation "
                   "(docs/workflow.md): its business status, owner and due time (RU-19).",
    "elements": [
        *extensions("Task", ("deadlineRemaining", REMAINING, 0, "1",
                             "While waiting for information: the time that was left until the due time")),
        el("Task.basedOn", min=1, type=refs("ServiceRequest"), short="The consultation request"),
        el("Task.businessStatus", min=1,
           binding=required("consultation-business-status", "Where the consultation is in its workflow")),
        el("Task.intent", fixedCode="order"),
        el("Task.priority", min=1, binding=required("form-of-care-priority", "The form of care (RU-14)")),
        el("Task.code", min=1, binding=required("consultation-kind", "The consultation kind")),
        el("Task.focus", type=refs("ServiceRequest")),
        el("Task.for", min=1, type=refs("Patient")),
        el("Task.requester", min=1),
    ],
}

CC = "ConsultConclusion"
CONSULT_CONCLUSION = {
    "name": CC, "type": "DiagnosticReport", "title": "Consultant's conclusion",
    "description": "The medical conclusion of a teleconsultation (RU-24, form 002/tm): based on the request, about "
                   "its patient, by the consultant(s), with the conclusion as text and/or ICD-10 codes, or as a "
                   "scanned signed file in presentedForm (SPB-3.6).",
    "elements": [
        el("DiagnosticReport", constraint=[
            invariant(CC, "cc-1", "A conclusion states it: conclusion, conclusionCode or presentedForm (RU-24)",
                      "conclusion.exists() or conclusionCode.exists() or presentedForm.exists()",
                      "DiagnosticReport.conclusion"),
            invariant(CC, "cc-2", "Each conclusionCode carries an ICD-10 coding (http://hl7.org/fhir/sid/icd-10)",
                      "conclusionCode.all(coding.where(system = 'http://hl7.org/fhir/sid/icd-10').exists())",
                      "DiagnosticReport.conclusionCode"),
        ]),
        el("DiagnosticReport.basedOn", min=1, type=refs("ServiceRequest"), short="The consultation request"),
        el("DiagnosticReport.subject", min=1, type=refs("Patient")),
        el("DiagnosticReport.performer", min=1, type=refs("Practitioner", "PractitionerRole", "Organization")),
    ],
}

CP = "ConsultProtocol"
CONSULT_PROTOCOL = {
    "name": CP, "type": "Composition", "title": "Teleconsultation / consilium protocol",
    "description": "The protocol of a teleconsultation or consilium (KZ-3, RU-25): number, date, patient, "
                   "consultants (authors, with their specialty through PractitionerRole), one attester per signer, "
                   "the organisation as custodian, and titled sections (complaints, anamnesis, preliminary "
                   "diagnosis, conclusion, examination plan, treatment, recommendations; codes from "
                   "protocol-section).",
    "elements": [
        el("Composition.identifier", min=1, short="The protocol number (KZ-3)"),
        el("Composition.subject", min=1, type=refs("Patient")),
        el("Composition.author", type=refs("Practitioner", "PractitionerRole", "Organization")),
        el("Composition.attester", short="One per signing doctor, and the organisation (RU-25, KZ-3)"),
        el("Composition.custodian", short="The consulting organisation"),
        el("Composition.section", min=1),
        el("Composition.section.title", min=1),
        el("Composition.section.code", binding=required("protocol-section", "Protocol sections (KZ-3)", "extensible")),
    ],
}

CM = "ConsultMessage"
CONSULT_MESSAGE = {
    "name": CM, "type": "Communication", "title": "Consultation chat message",
    "description": "A message of a consultation's chat: based on (or part of) the request or its Task, from its "
                   "sender, at the time it was sent, with text or files.",
    "elements": [
        el("Communication", constraint=[
            invariant(CM, "cm-1", "A message belongs to a consultation: basedOn or partOf",
                      "basedOn.exists() or partOf.exists()", "Communication.basedOn")]),
        el("Communication.sent", min=1),
        el("Communication.sender", min=1),
        el("Communication.payload", min=1),
    ],
}

PROFILES = [TELEMED_REQUEST, CONSULT_TASK, CONSULT_CONCLUSION, CONSULT_PROTOCOL, CONSULT_MESSAGE]

# (id, title, description, contexts, value type or the parts of a complex extension, binding or None)
EXTENSIONS = [
    ("consult-deadline-remaining", "Time left while the clock is paused",
     "While a ConsultTask waits for information (RU-20) its due time is removed and the time that was left is kept "
     "here (seconds); $provide-info sets the due time to now plus this time.", ["Task"], "Duration", None),
    ("consultation-mode", "Consultation mode",
     "How the consultation is to be held: in real time, deferred, or mixed (RU-15).", ["ServiceRequest"], "Coding",
     required("consultation-mode", "realtime | deferred | mixed")),
    ("treated-since", "Treated since",
     "The date since which the patient is treated for the condition the consultation is about (KZ-2).",
     ["ServiceRequest"], "date", None),
    ("age-category", "Age category",
     "The age category of the service profile asked for, e.g. adults or children (KZ-2).", ["ServiceRequest"],
     "CodeableConcept", None),
    ("consult-deadline-policy", "Deadline policy rule",
     "One rule of an organisation's deadline policy (RU-19: per organisation and profile): the form of care it is "
     "for, the deadline after receipt (absent: the end of the day of receipt) and the specialties it is limited to "
     "(operations/consult/deadline.py).", ["Organization"],
     [("form-of-care", "code", 1, "1", "emergency | urgent | planned"),
      ("deadline", "Duration", 0, "1", "Time after receipt (s, min, h or d)"),
      ("specialty", "CodeableConcept", 0, "*", "The service profiles the rule holds for")], None),
    ("email-opt-out", "No e-mail notifications",
     "true: the person receives no participant e-mail (docs/notifications.md).",
     ["Practitioner", "PractitionerRole", "Patient", "RelatedPerson"], "boolean", None),
    ("signing-key", "Registered signing key",
     "A public JWK (JSON text, with kid) registered for the practitioner or the organisation's seal, for signatures "
     "without a certificate chain (operations/consult/signatures.py).", ["Practitioner", "Organization"], "string",
     None),
    ("signature-certificate", "Signing certificate",
     "The certificate (or registered key) a signature was verified with, shown with the document (KZ-3: "
     "certificate id, owner, validity).", ["Signature"],
     [("serial", "string", 0, "1", "Certificate serial number (hex)"),
      ("subject", "string", 0, "1", "Owner (RFC 4514)"), ("issuer", "string", 0, "1", "Issuer (RFC 4514)"),
      ("validity", "Period", 0, "1", "Valid from - to"), ("kid", "string", 0, "1", "Registered key id"),
      ("jwk", "string", 0, "1", "The registered public JWK")], None),
    ("subscription-grant", "Subscription grant",
     "Set by the server: who created the Subscription and with which access, re-checked at delivery "
     "(docs/notifications.md).", ["Subscription"],
     [(k, "string", 0, "1", k) for k in ("subject", "client", "scope", "fhirUser", "patient")], None),
    ("subscription-hmac-secret", "Notification HMAC secret",
     "The shared secret rest-hook notifications are signed with (docs/notifications.md).", ["Subscription.channel"],
     "string", None),
    ("constraint-location", "Constraint location",
     "The element an invariant is about, as a FHIRPath expression: named in the OperationOutcome issue when the "
     "invariant fails.", ["ElementDefinition.constraint"], "string", None),
]

# ValueSets beyond "all codes of one of our CodeSystems": (id, name, title, description, system, codes).
VALUE_SETS = [
    ("form-of-care-priority", "FormOfCarePriority", "Priorities that name a form of care",
     "The request priorities a consultation may have, one per form of care (RU-14): stat = emergency, urgent = "
     "urgent, routine = planned (codesystem form-of-care). asap names no form of care.",
     "http://hl7.org/fhir/request-priority", ["routine", "urgent", "stat"]),
]
