"""Composition/$sign and $verify-signatures: each consultant signs the protocol's canonical bytes
with their own key (a detached JWS), the organisation's seal comes last, and the last signature
completes the consultation. Keys are made and used here, on the client's side."""

from __future__ import annotations

import asyncio
import base64
import json

import orjson
import pytest
import rfc8785
from cryptography import x509
from jwcrypto import jwk, jws

from fhir_server.write import new_version
from operations.consult.signatures import CERTIFICATE, E1762
from profiles import SNILS_SYSTEM
from tests.fhir_server.subscriptions.smtp import SMTPSink, sink as smtp  # noqa: F401 - the fixture, as "smtp"
from tests.operations.consult.conftest import as_, parameters, problem, ref
from tests.operations.consult.signing import FORM, Signer, bytes_to_sign, completed_form, sign

SEAL = "1.2.840.10065.1.12.1.6"


@pytest.fixture
def settings(settings, request):
    """Tests that use ``smtp`` get a real SMTP server to write to."""
    if "smtp" in request.fixturenames:
        sink = request.getfixturevalue("smtp")
        settings.smtp_host, settings.smtp_port, settings.smtp_from = "127.0.0.1", sink.port, "noreply@telemed.test"
    return settings




async def register(client, resource: str, signer: Signer, **extra) -> None:
    """Register ``signer``'s public key on a Practitioner or Organization (and set ``extra``)."""
    body = (await client.get(f"/{resource}")).json()
    body.setdefault("extension", []).append(signer.registration())
    body.update(extra)
    assert (await client.put(f"/{resource}", json=body)).status_code == 200


async def verify(desk, composition: str, who: str = "requester") -> dict:
    r = await desk.client.get(f"/{composition}/$verify-signatures", headers=as_(desk.app, who))
    assert r.status_code == 200, r.text
    out = {"complete": r.json()["parameter"][0]["valueBoolean"], "signatures": []}
    for p in r.json()["parameter"][1:]:
        parts = {x["name"]: next(v for k, v in x.items() if k.startswith("value")) for x in p["part"]}
        out["signatures"].append(parts)
    return out


async def read(desk, path: str, who: str = "requester") -> dict:
    r = await desk.client.get(f"/{path}", headers=as_(desk.app, who))
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.req("RU-57")
async def test_the_bytes_to_sign_are_the_canonical_document_without_what_changes(desk):
    _, report_ref, protocol_ref = await completed_form(desk)
    payload, etag = await bytes_to_sign(desk, protocol_ref, "consultant1")
    assert etag == 'W/"1"'
    view = json.loads(payload)
    assert rfc8785.dumps(view) == payload  # RFC 8785 canonical form
    assert set(view) == {"resourceType", "type", "entry"} and view["type"] == "document"
    resources = [e["resource"] for e in view["entry"]]
    assert f"{resources[0]['resourceType']}/{resources[0]['id']}" == protocol_ref
    assert all("meta" not in r for r in resources) and "status" not in resources[0]
    again, _ = await bytes_to_sign(desk, protocol_ref, "requester")
    assert again == payload  # the same for everyone, every time


@pytest.mark.req("RU-57")
@pytest.mark.req("KZ-3")
@pytest.mark.req("RU-8")
async def test_the_consultant_signs_then_the_seal_completes_the_consultation(desk, client):
    task, report_ref, protocol_ref = await completed_form(desk)
    doctor, seal = Signer("Consultant One"), Signer("Clinic B", "RSA")
    await register(client, "Organization/orgB", seal)
    r = await sign(desk, protocol_ref, "consultant1", doctor)
    assert r.status_code == 201, r.text
    provenance = r.json()
    signature = provenance["signature"][0]
    assert signature["type"] == [{"system": E1762, "code": "1.2.840.10065.1.12.1.1", "display": "Author's Signature"}]
    assert (signature["who"], signature["sigFormat"], signature["targetFormat"]) == (
        ref("PractitionerRole/consultant1-role"), "application/jose", "application/json")
    assert provenance["target"][0] == ref(f"{protocol_ref}/_history/1")
    assert base64.b64decode(signature["data"]).decode().count(".") == 2
    certificate = {p["url"]: p for p in signature["extension"][0]["extension"]}
    assert signature["extension"][0]["url"] == CERTIFICATE
    assert certificate["subject"]["valueString"] == "CN=Consultant One"  # KZ-3: certificate id, owner, validity
    assert certificate["serial"]["valueString"] == format(doctor.cert.serial_number, "X")
    assert set(certificate["validity"]["valuePeriod"]) == {"start", "end"}
    # one signature is missing still: the requester sees the consultation in progress
    current = (await desk.task(task["id"], "requester")).json()
    assert (current["status"], current["businessStatus"]["coding"][0]["code"]) == ("in-progress", "awaiting-signatures")
    r = await sign(desk, protocol_ref, None, seal, x5c=False)
    assert r.status_code == 201, r.text
    assert r.json()["signature"][0]["type"][0]["code"] == SEAL
    assert r.json()["signature"][0]["who"] == ref("Organization/orgB")
    current = (await desk.task(task["id"], "requester")).json()
    assert (current["status"], current["businessStatus"]["coding"][0]["code"]) == ("completed", "completed")
    assert "end" in current["executionPeriod"]
    assert (await read(desk, protocol_ref))["status"] == "final"
    assert (await read(desk, report_ref))["status"] == "final"
    assert (await read(desk, "ServiceRequest/sr1"))["status"] == "completed"
    checked = await verify(desk, protocol_ref)
    assert checked["complete"] is True
    assert [(s["signer"]["reference"], s["status"]["code"]) for s in checked["signatures"]] == [
        ("PractitionerRole/consultant1-role", "valid"), ("Organization/orgB", "valid")]
    assert checked["signatures"][0]["certificate-subject"] == "CN=Consultant One"
    assert checked["signatures"][1]["certificate-kid"] == "Clinic B-key"
    # the seal makes no colleague of the consulting organisation a participant
    colleague = await desk.client.get(f"/{protocol_ref}", headers=as_(desk.app, "consultant2"))
    assert colleague.status_code == 404, colleague.text


@pytest.mark.req("SPB-3.6")
async def test_the_requester_downloads_the_protocol_with_its_detached_signature(desk):
    _, _, protocol_ref = await completed_form(desk)
    doctor = Signer("Consultant One")
    assert (await sign(desk, protocol_ref, "consultant1", doctor)).status_code == 201
    payload, _ = await bytes_to_sign(desk, protocol_ref, "requester")
    found = (await desk.client.get(f"/Provenance?target={protocol_ref}", headers=as_(desk.app, "requester"))).json()
    compact = base64.b64decode(found["entry"][0]["resource"]["signature"][0]["data"]).decode()
    token = jws.JWS()
    token.deserialize(compact)
    certificate = x509.load_der_x509_certificate(base64.b64decode(token.jose_header["x5c"][0]))
    token.verify(jwk.JWK.from_pyca(certificate.public_key()), detached_payload=payload)  # checks on the client


@pytest.mark.req("KZ-3")
async def test_the_seal_comes_after_every_consultant(desk, client):
    _, _, protocol_ref = await completed_form(desk)
    seal = Signer("Clinic B")
    await register(client, "Organization/orgB", seal)
    problem(await sign(desk, protocol_ref, None, seal, x5c=False), 409, "conflict", "Composition.attester")
    checked = await verify(desk, protocol_ref)
    assert checked["complete"] is False
    assert [s["status"]["code"] for s in checked["signatures"]] == ["missing", "missing"]


@pytest.mark.req("RU-57")
async def test_a_key_registered_for_the_practitioner_signs_too(desk, client):
    _, _, protocol_ref = await completed_form(desk)
    doctor = Signer("Consultant One", "RSA")
    await register(client, "Practitioner/consultant1", doctor)
    r = await sign(desk, protocol_ref, "consultant1", doctor, x5c=False)
    assert r.status_code == 201, r.text
    assert (await verify(desk, protocol_ref))["signatures"][0]["status"]["code"] == "valid"
    stranger = Signer("Someone")  # a kid nobody registered
    _, _, other = await completed_form(desk, "sr-stat")
    problem(await sign(desk, other, "consultant1", stranger, x5c=False), 422, "processing",
            "Parameters.parameter.where(name='signature')")


@pytest.mark.req("RU-57")
async def test_a_certificate_of_another_person_is_refused(desk, client):
    _, _, protocol_ref = await completed_form(desk)
    doctor = (await client.get("/Practitioner/consultant1")).json()
    doctor["identifier"] = [{"system": SNILS_SYSTEM, "value": "123-456-789 01"}]
    assert (await client.put("/Practitioner/consultant1", json=doctor)).status_code == 200
    problem(await sign(desk, protocol_ref, "consultant1", Signer("Someone Else", snils="98765432100")), 422,
            "processing", "Parameters.parameter.where(name='signature')")
    r = await sign(desk, protocol_ref, "consultant1", Signer("Consultant One", snils="12345678901"))
    assert r.status_code == 201, r.text


async def test_only_the_attesters_sign_and_each_once(desk):
    _, _, protocol_ref = await completed_form(desk)
    doctor = Signer("Consultant One")
    problem(await sign(desk, protocol_ref, "requester", doctor), 403, "forbidden")
    payload, _ = await bytes_to_sign(desk, protocol_ref, "consultant1")
    for who in ("consultant2", "outsider"):  # they take no part in it
        r = await desk.client.post(f"/{protocol_ref}/$sign", headers=as_(desk.app, who),
                                   json=parameters(signature=doctor.sign(payload)))
        problem(r, 404, "not-found")
    assert (await sign(desk, protocol_ref, "consultant1", doctor)).status_code == 201
    problem(await sign(desk, protocol_ref, "consultant1", doctor), 409, "conflict", "Composition.attester")


@pytest.mark.req("RU-57")
async def test_a_signature_that_does_not_verify_is_refused(desk):
    _, _, protocol_ref = await completed_form(desk)
    doctor = Signer("Consultant One")
    headers = as_(desk.app, "consultant1")
    wrong = doctor.sign(b'{"something":"else"}')
    problem(await desk.client.post(f"/{protocol_ref}/$sign", headers=headers, json=parameters(signature=wrong)),
            422, "processing", "Parameters.parameter.where(name='signature')")
    problem(await desk.client.post(f"/{protocol_ref}/$sign", headers=headers, json=parameters(signature="a.b.c")),
            400, "invalid", "Parameters.parameter.where(name='signature')")
    hmac = "eyJhbGciOiJIUzI1NiJ9..c2ln"
    problem(await desk.client.post(f"/{protocol_ref}/$sign", headers=headers, json=parameters(signature=hmac)),
            400, "invalid", "Parameters.parameter.where(name='signature')")
    expired = Signer("Consultant One", valid_days=10, starts_in_days=-30)
    problem(await sign(desk, protocol_ref, "consultant1", expired), 422, "processing",
            "Parameters.parameter.where(name='signature')")
    problem(await desk.client.post(f"/{protocol_ref}/$sign", headers={**headers, "If-Match": 'W/"7"'},
                                   json=parameters(signature=doctor.sign(b"{}"))), 412, "conflict", "If-Match")
    assert (await verify(desk, protocol_ref))["signatures"][0]["status"]["code"] == "missing"


async def test_a_protocol_is_never_replaced_under_a_signature(desk):
    task, _, protocol_ref = await completed_form(desk)
    doctor = Signer("Consultant One")
    payload, _ = await bytes_to_sign(desk, protocol_ref, "consultant1")
    signing = desk.client.post(f"/{protocol_ref}/$sign", headers=as_(desk.app, "consultant1"),
                               json=parameters(signature=doctor.sign(payload)))
    redo = desk.op("consultant1", f"Task/{task['id']}/$complete", **{**FORM, "conclusion": "Revised"})
    signed, redone = await asyncio.gather(signing, redo)
    assert (signed.status_code, redone.status_code) in ((201, 409), (422, 200)), (signed.text, redone.text)
    statuses = [s["status"]["code"] for s in (await verify(desk, protocol_ref))["signatures"]]
    assert statuses == (["valid", "missing"] if signed.status_code == 201 else ["missing", "missing"])


async def test_a_signed_protocol_is_not_completed_again(desk):
    task, _, protocol_ref = await completed_form(desk)
    assert (await sign(desk, protocol_ref, "consultant1", Signer("Consultant One"))).status_code == 201
    problem(await desk.op("consultant1", f"Task/{task['id']}/$complete", **FORM), 409, "conflict", "Task.output")


@pytest.mark.req("RU-57")
async def test_a_document_changed_after_signing_fails_verification(desk, client, app):
    _, _, protocol_ref = await completed_form(desk)
    assert (await sign(desk, protocol_ref, "consultant1", Signer("Consultant One"))).status_code == 201
    assert (await verify(desk, protocol_ref))["signatures"][0]["status"]["code"] == "valid"
    # the patient's record, part of the document, changes
    patient = (await client.get("/Patient/p1")).json()
    patient["name"] = [{"family": "Petrova"}]
    assert (await client.put("/Patient/p1", json=patient)).status_code == 200
    first = (await verify(desk, protocol_ref))["signatures"][0]
    assert first["status"]["code"] == "document-changed" and "Patient/p1" in first["message"]
    # the protocol itself is changed behind the server's back (in the database)
    store = app.state.services.store
    stored = await store.read(*protocol_ref.split("/"))
    changed = orjson.loads(stored.json)
    changed["title"] = "Something else"
    await store.commit([new_version(changed, stored.id, stored.version + 1, "PUT")])
    first = (await verify(desk, protocol_ref))["signatures"][0]
    assert first["status"]["code"] == "document-changed" and protocol_ref in first["message"]
    # a signature whose bytes were altered does not verify at all
    provenance_id = first["provenance"]["reference"].split("/")[1]
    stored = await store.read("Provenance", provenance_id)
    forged = orjson.loads(stored.json)
    jws = base64.b64decode(forged["signature"][0]["data"]).decode()
    head, _, sig = jws.split(".")
    forged["signature"][0]["data"] = base64.b64encode(f"{head}..{sig[:-4]}AAAA".encode()).decode()
    await store.commit([new_version(forged, stored.id, stored.version + 1, "PUT")])
    assert (await verify(desk, protocol_ref))["signatures"][0]["status"]["code"] == "invalid"


async def _mails(sink: SMTPSink, wanted, timeout: float = 15) -> list[dict]:
    """The mails received once one of them is ``wanted`` (a test of a mail), and a moment more."""
    for _ in range(int(timeout / 0.1)):
        if any(wanted(m) for m in sink.messages()):
            await asyncio.sleep(0.5)
            return sink.messages()
        await asyncio.sleep(0.1)
    raise AssertionError(f"The mail did not arrive: {sink.messages()}")


def _mail(address: str) -> dict:
    return {"telecom": [{"system": "email", "value": address}],
            "communication": [{"coding": [{"system": "urn:ietf:bcp:47", "code": "en"}]}]}


async def _finish(desk, client, protocol_ref: str) -> None:
    seal = Signer("Clinic B")
    await register(client, "Organization/orgB", seal)
    assert (await sign(desk, protocol_ref, "consultant1", Signer("Consultant One"))).status_code == 201
    assert (await sign(desk, protocol_ref, None, seal, x5c=False)).status_code == 201


@pytest.mark.req("RU-8")
async def test_completion_notifies_the_requester(desk, client, smtp):
    requester = (await client.get("/Practitioner/requester")).json() | _mail("requester@a.test")
    assert (await client.put("/Practitioner/requester", json=requester)).status_code == 200
    _, report_ref, protocol_ref = await completed_form(desk)
    await _finish(desk, client, protocol_ref)
    mails = await _mails(smtp, lambda m: report_ref in m["subject"])
    assert [m["to"] for m in mails if report_ref in m["subject"]] == ["requester@a.test"]  # the conclusion is available


@pytest.mark.req("RU-42")
async def test_a_diagnostic_result_conclusion_also_goes_to_the_diagnostician(desk, client, smtp):
    diagnostician = {"resourceType": "Practitioner", "id": "radiologist", "name": [{"family": "Radiologist"}],
                     **_mail("radiologist@c.test")}
    study = {"resourceType": "DiagnosticReport", "id": "ct", "status": "final", "code": {"text": "CT of the head"},
             "subject": ref("Patient/p1"), "performer": [ref("Practitioner/radiologist")]}
    request = (await client.get("/ServiceRequest/sr1")).json()
    request["category"][0]["coding"][0]["code"] = "diagnostic-result"
    request["supportingInfo"] = [ref("DiagnosticReport/ct")]
    for body in (diagnostician, study, request):
        assert (await client.put(f"/{body['resourceType']}/{body['id']}", json=body)).status_code in (200, 201)
    _, report_ref, protocol_ref = await completed_form(desk)
    problem(await desk.client.get(f"/{report_ref}", headers=as_(desk.app, "radiologist")), 404, "not-found")
    await _finish(desk, client, protocol_ref)
    opened = await desk.client.get(f"/{report_ref}", headers=as_(desk.app, "radiologist"))
    assert opened.status_code == 200 and opened.json()["status"] == "final"  # it goes to the diagnostician
    mails = await _mails(smtp, lambda m: m["to"] == "radiologist@c.test")
    mine = [m for m in mails if m["to"] == "radiologist@c.test"]
    assert len(mine) == 1 and report_ref in mine[0]["subject"]  # only the conclusion, once
