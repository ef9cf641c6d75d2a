"""The Kuzbass doctor-to-doctor flow end to end, over real HTTP with every person's own token
(Kuzbass regional system steps 3-5; 965n p.8, p.24, p.57; SPB manual 2.2, 3.3-3.6).

Dr Petrov of the district hospital finds the patient by SNILS, saves an incomplete draft,
completes it with an attached ECG and sends it to the regional hospital; Dr Ivanova finds it
among her available consultations, takes it, talks to him in the request's chat, writes the
conclusion form and signs the protocol with her qualified certificate; the hospital's signing
service applies the seal; Dr Petrov is notified, reads the signed document and verifies it, and
the consultation is in the regional hospital's journal (form 003/tm)."""

from __future__ import annotations

import base64
import csv
import io
from datetime import datetime, timezone

import pytest

from profiles import SNILS_SYSTEM
from tests.operations.consult.signing import FORM, Signer
from tests.scenarios import world
from tests.scenarios.region import ref

IVANOVA_SNILS = "123-456-789 64"


async def _sign(person, composition: str, signer: Signer) -> dict:
    """GET the bytes to sign, sign them on the signer's side, POST the detached JWS."""
    got = await person.http.get(f"/{composition}/$sign")
    assert got.status_code == 200, got.text
    r = await person.http.post(f"/{composition}/$sign", headers={"If-Match": got.headers["etag"]},
                               json={"resourceType": "Parameters", "parameter": [
                                   {"name": "signature", "valueString": signer.sign(got.content)}]})
    assert r.status_code == 201, r.text
    return r.json()


def _entries(bundle: dict) -> list[dict]:
    return [e["resource"] for e in bundle.get("entry", []) if e.get("search", {}).get("mode", "match") == "match"]


@pytest.mark.req("KZ-2")
@pytest.mark.req("SPB-D")
@pytest.mark.req("CN-1")
@pytest.mark.req("SPB-2.2")
@pytest.mark.req("SPB-3.3")
@pytest.mark.req("SPB-3.4")
@pytest.mark.req("SPB-4.2")
@pytest.mark.req("RU-24")
@pytest.mark.req("KZ-3")
@pytest.mark.req("RU-57")
@pytest.mark.req("RU-8")
@pytest.mark.req("UA-VI.6")
async def test_kuzbass_doctor_to_doctor_consultation_end_to_end(region):
    seal = Signer("Kuzbass regional clinical hospital", kind="RSA")
    ivanova_cert = Signer("Ivanova Elena", snils=IVANOVA_SNILS)
    people = world.resources()
    for r in people:
        if r["resourceType"] == "Organization" and r["id"] == "regional":
            r["extension"] = [seal.registration()]  # the hospital's seal key
        if r["resourceType"] == "Practitioner" and r["id"] == "ivanova":
            r["identifier"] = [{"system": SNILS_SYSTEM, "value": IVANOVA_SNILS}]
    await region.load(people)
    await region.enrol(world.users())
    petrov, ivanova, orlova = [await region.login(u) for u in ("petrov", "ivanova", "orlova")]
    signing_service = await region.service("Regional hospital signing service", "system/*.cruds")

    # Step 3 (KZ-2): the patient is found by SNILS.
    found = await petrov.get("Patient", identifier=f"{SNILS_SYSTEM}|{world.PATIENT_SNILS}")
    assert [p["id"] for p in _entries(found.json())] == ["kz-patient"]

    # An incomplete draft is saved (SPB-D), but not sent: the missing element is named.
    full = world.request("kz-1")
    draft = {k: v for k, v in full.items() if k not in ("reasonCode", "id")}
    r = await petrov.http.post("/ServiceRequest", json=draft)
    assert r.status_code == 201, r.text
    sr_id = r.json()["id"]
    r = await petrov.op(f"ServiceRequest/{sr_id}/$submit", organization=ref("Organization/regional"))
    assert r.status_code == 422, r.text
    assert any("ServiceRequest.reasonCode" in i.get("expression", []) for i in r.json()["issue"]), r.text
    drafts = await petrov.get("ServiceRequest", _query="drafts")
    assert sr_id in [s["id"] for s in _entries(drafts.json())]

    # The draft is completed with the ECG attached (RU-29) and sent to the regional hospital.
    ecg = {"resourceType": "DocumentReference", "status": "current", "subject": ref("Patient/kz-patient"),
           "type": {"text": "ECG"}, "context": {"related": [ref(f"ServiceRequest/{sr_id}")]},
           "content": [{"attachment": {"contentType": "application/pdf", "title": "ECG 2026-12-04",
                                       "data": base64.b64encode(b"%PDF-1.4 ecg").decode()}}]}
    r = await petrov.http.post("/DocumentReference", json=ecg)
    assert r.status_code == 201, r.text
    complete = {**full, "id": sr_id, "supportingInfo": [*full["supportingInfo"], ref(f"DocumentReference/{r.json()['id']}")]}
    r = await petrov.http.put(f"/ServiceRequest/{sr_id}", json=complete)
    assert r.status_code == 200, r.text
    r = await petrov.op(f"ServiceRequest/{sr_id}/$submit", organization=ref("Organization/regional"))
    assert r.status_code == 201, r.text
    task_id = r.json()["id"]
    path = f"Task/{task_id}"

    # Step 4: Dr Ivanova finds it among her available consultations (SPB-2.2) and takes it.
    available = await ivanova.get("Task", _query="available")
    assert task_id in [t["id"] for t in _entries(available.json())]
    r = await ivanova.op(f"{path}/$accept")
    assert r.status_code == 200 and r.json()["status"] == "in-progress", r.text
    in_work = await ivanova.get("Task", _query="in-work")
    assert [t["id"] for t in _entries(in_work.json())] == [task_id]

    # The request's chat (SPB-3.4): opened at submission, both doctors write and read it.
    r = await ivanova.http.post("/Communication", json={
        "resourceType": "Communication", "status": "completed", "basedOn": [ref(f"ServiceRequest/{sr_id}")],
        "payload": [{"contentString": "Received. Is the patient on anticoagulants?"}]})
    assert r.status_code == 201, r.text
    r = await petrov.http.post("/Communication", json={
        "resourceType": "Communication", "status": "completed", "basedOn": [ref(f"ServiceRequest/{sr_id}")],
        "payload": [{"contentString": "Yes, apixaban 5 mg twice a day."}]})
    assert r.status_code == 201, r.text
    thread = await ivanova.get("Communication", **{"based-on": f"ServiceRequest/{sr_id}", "_sort": "sent"})
    texts = [p.get("contentString") for m in _entries(thread.json()) for p in m.get("payload", [])]
    assert texts[-2:] == ["Received. Is the patient on anticoagulants?", "Yes, apixaban 5 mg twice a day."]
    assert len(texts) >= 3  # the thread began at submission

    # Step 5 (KZ-3, SPB-3.6): the conclusion form, then the signatures: the doctor's, then the seal.
    r = await ivanova.op(f"{path}/$complete", **FORM)
    assert r.status_code == 200, r.text
    outputs = {o["type"]["coding"][0]["code"]: o["valueReference"]["reference"] for o in r.json()["output"]}
    protocol = outputs["protocol"]
    assert (await petrov.read(path))["status"] == "in-progress"  # not done before the signatures
    await _sign(ivanova, protocol, ivanova_cert)
    assert (await petrov.read(path))["status"] == "in-progress"  # the seal is still missing
    await _sign(signing_service, protocol, seal)

    # RU-8: the requester is notified and has the signed conclusion.
    task = await petrov.read(path)
    assert task["status"] == "completed" and task["businessStatus"]["coding"][0]["code"] == "completed"
    assert await region.mails("petrov@kuzbass.example", "")
    thread = await petrov.get("Communication", **{"based-on": f"ServiceRequest/{sr_id}", "_sort": "sent"})
    events = [m["reasonCode"][0]["coding"][0]["code"] for m in _entries(thread.json()) if m.get("reasonCode")]
    assert events == ["awaiting-acceptance", "in-work", "awaiting-signatures", "completed"]  # SPB-4.2
    report = await petrov.read(outputs["conclusion"])
    assert report["status"] == "final" and report["conclusion"] == FORM["conclusion"]
    assert report["conclusionCode"][0]["coding"][0]["code"] == "I69.3"
    document = await petrov.get(f"{protocol}/$document")
    assert document.status_code == 200 and document.json()["type"] == "document"
    kinds = [e["resource"]["resourceType"] for e in document.json()["entry"]]
    assert kinds[0] == "Composition" and {"Patient", "DiagnosticReport", "Organization"} <= set(kinds)
    checked = (await petrov.get(f"{protocol}/$verify-signatures")).json()
    assert {"name": "complete", "valueBoolean": True} in checked["parameter"]
    statuses = [next(p["valueCoding"]["code"] for p in s["part"] if p["name"] == "status")
                for s in checked["parameter"] if s["name"] == "signature"]
    assert statuses == ["valid", "valid"]
    subjects = [p.get("valueString") for s in checked["parameter"] if s["name"] == "signature"
                for p in s["part"] if p["name"] == "certificate-subject"]
    assert any("Ivanova Elena" in (s or "") for s in subjects)  # the certificate's owner is shown (KZ-3)

    # UA-VI.6: the regional hospital's journal holds it, with its result; as CSV too.
    today = datetime.now(timezone.utc).date().isoformat()
    journal = await orlova.get("Task/$journal", organization="Organization/regional", start=today, end=today)
    assert journal.status_code == 200, journal.text
    rows = [{p["name"]: p for p in e["resource"]["parameter"]} for e in journal.json()["entry"]]
    row = next(r for r in rows if r["task"]["valueReference"]["reference"] == path)
    assert row["result"]["valueCode" if "valueCode" in row["result"] else "valueString"] == "conclusion"
    as_csv = await orlova.get("Task/$journal", organization="Organization/regional", start=today, end=today,
                              _format="text/csv")
    assert as_csv.status_code == 200 and as_csv.headers["content-type"].startswith("text/csv")
    lines = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert any(line["task"] == path and line["result"] == "conclusion" for line in lines)
    # Someone of another organisation sees none of it.
    belov = await region.login("belov")
    assert (await belov.get(path)).status_code == 404
    assert (await belov.get(f"{protocol}/$document")).status_code == 404
