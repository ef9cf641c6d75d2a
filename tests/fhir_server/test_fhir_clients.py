"""Conformance with real FHIR client libraries (fhirpy, fhirclient) over real HTTP to uvicorn."""

from __future__ import annotations

import pytest
from fhirclient import client as fc_client
from fhirclient.models.humanname import HumanName
from fhirclient.models.identifier import Identifier
from fhirclient.models.patient import Patient as FcPatient
from fhirpy import AsyncFHIRClient

from tests.fhir_server.server_process import ServerProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    proc = ServerProcess(tmp_path_factory.mktemp("clients") / "data").start()
    yield proc
    proc.stop()


@pytest.mark.req("UA-III.5")
async def test_fhirpy_crud_search_and_history(server):
    client = AsyncFHIRClient(server.base, authorization=server.headers["Authorization"],
                             extra_headers={"Accept": "application/fhir+json"})
    patient = client.resource("Patient", name=[{"family": "Кузнецов", "given": ["Иван"]}],
                              identifier=[{"system": "urn:fhirpy", "value": "p-1"}], gender="male")
    await patient.save()
    assert patient.id and patient["meta"]["versionId"] == "1"

    found = await client.resources("Patient").search(identifier="urn:fhirpy|p-1").fetch_all()
    assert [p.id for p in found] == [patient.id]
    by_name = await client.resources("Patient").search(family="кузнец").fetch()
    assert patient.id in [p.id for p in by_name]

    patient["birthDate"] = "1970-01-02"
    await patient.save()
    fetched = await client.reference("Patient", patient.id).to_resource()
    assert fetched["birthDate"] == "1970-01-02" and fetched["meta"]["versionId"] == "2"

    obs = client.resource("Observation", status="final", code={"text": "pulse"},
                          subject=patient.to_reference())
    await obs.save()
    listed = await client.resources("Observation").search(subject=f"Patient/{patient.id}").fetch()
    assert [o.id for o in listed] == [obs.id]

    await obs.delete()
    count = await client.resources("Observation").search(subject=f"Patient/{patient.id}").count()
    assert count == 0


@pytest.mark.req("UA-III.5")
def test_fhirclient_create_read_update_search(server):
    smart = fc_client.FHIRClient(settings={"app_id": "conformance", "api_base": server.base + "/"})
    smart.server.session.headers.update(server.headers)
    p = FcPatient()
    p.name = [HumanName({"family": "Petrova", "given": ["Anna"]})]
    ident = Identifier()
    ident.system, ident.value = "urn:fhirclient", "fc-1"
    p.identifier = [ident]
    p.gender = "female"
    created = p.create(smart.server)
    assert created["resourceType"] == "Patient"
    pid = created["id"]

    read = FcPatient.read(pid, smart.server)
    assert read.name[0].family == "Petrova" and read.meta.versionId == "1"

    read.birthDate = None
    read.active = True
    read.update(smart.server)
    again = FcPatient.read(pid, smart.server)
    assert again.active is True and again.meta.versionId == "2"

    bundles = list(FcPatient.where({"identifier": "urn:fhirclient|fc-1"}).perform_iter(smart.server))
    assert [b.type for b in bundles] == ["searchset"]
    assert [e.resource.id for e in bundles[0].entry] == [pid]
