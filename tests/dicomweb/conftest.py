"""DICOMweb tests against a real Orthanc (see orthanc.py) behind a real server process.

One Orthanc per session, and one FHIR server process per store (embedded SQLite, and MongoDB on
the server ``tests/conftest.py`` provides; ``TELEMED_DICOMWEB_UPSTREAM`` set), each seeded with
two consultations and four studies of its own (fresh UIDs, in the one Orthanc):

- study A (patient p1): in ServiceRequest/c1's supportingInfo;
- study B (patient p1): an input of Task/t1 of consultation c1 (owned by ``consultant``);
- study C (patient p2): in ServiceRequest/c2's supportingInfo (requested by ``unrelated``);
- study D (patient p1): an ImagingStudy linked to no consultation.

Patient p1 has a medical record number (``P1_MRN``) and a SNILS (``P1_SNILS``, with its
hyphens and space); instances stored to c1 must carry one of them as PatientID.
"""

from __future__ import annotations

import httpx
import pytest

from fhir_server.auth import tokens
from fhir_server.auth.consultation import KIND
from fhir_server.auth.keys import KeyRing
from fhir_server.settings import Settings
from profiles import SNILS_SYSTEM
from tests.conftest import STORES, mongo_store_uri
from tests.dicomweb import data, orthanc
from tests.fhir_server.server_process import ServerProcess, free_port

ROLES = {"requester": "orgA", "consultant": "orgB", "colleague": "orgB", "unrelated": "orgC"}
MRN_SYSTEM = "urn:oid:1.2.643.5.1.13.13.12.2.77.7.100"
P1_MRN, P1_SNILS, P2_MRN = "P1-MRN-0001", "123-456-789 01", "P2-MRN-0002"


@pytest.fixture(scope="session")
def pacs():
    reason = orthanc.available()
    if reason:
        pytest.skip(reason)
    server = orthanc.start()
    yield server
    server.stop()


def store_direct(pacs, study: data.Study) -> None:
    r = httpx.post(f"{pacs.dicomweb}/studies", content=study.body(), auth=pacs.auth, timeout=120,
                   headers={"Content-Type": data.CONTENT_TYPE, "Accept": "application/dicom+json"})
    assert r.status_code == 200, r.text


def imaging_study(id: str, study: data.Study, patient: str) -> dict:
    return {"resourceType": "ImagingStudy", "id": id, "status": "available",
            "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{study.uid}"}],
            "subject": {"reference": f"Patient/{patient}"}}


def world(studies: dict[str, data.Study]) -> list[dict]:
    ref = lambda r: {"reference": r}  # noqa: E731
    kind = [{"coding": [{"system": KIND, "code": "doctor-doctor"}]}]
    out = [{"resourceType": "Organization", "id": o, "name": o} for o in ("orgA", "orgB", "orgC")]
    out += [{"resourceType": "Practitioner", "id": p, "name": [{"family": p}]} for p in ROLES]
    out += [{"resourceType": "PractitionerRole", "id": f"{p}-role", "active": True,
             "practitioner": ref(f"Practitioner/{p}"), "organization": ref(f"Organization/{o}")}
            for p, o in ROLES.items()]
    out += [{"resourceType": "Patient", "id": "p1", "name": [{"family": "p1"}],
             "identifier": [{"system": MRN_SYSTEM, "value": P1_MRN}, {"system": SNILS_SYSTEM, "value": P1_SNILS}]},
            {"resourceType": "Patient", "id": "p2", "name": [{"family": "p2"}],
             "identifier": [{"system": MRN_SYSTEM, "value": P2_MRN}]}]
    out += [imaging_study("isA", studies["A"], "p1"), imaging_study("isB", studies["B"], "p1"),
            imaging_study("isC", studies["C"], "p2"), imaging_study("isD", studies["D"], "p1")]
    out += [
        {"resourceType": "ServiceRequest", "id": "c1", "status": "active", "intent": "order", "category": kind,
         "subject": ref("Patient/p1"), "requester": ref("PractitionerRole/requester-role"),
         "supportingInfo": [ref("ImagingStudy/isA")]},
        {"resourceType": "Task", "id": "t1", "status": "in-progress", "intent": "order",
         "basedOn": [ref("ServiceRequest/c1")], "for": ref("Patient/p1"),
         "requester": ref("PractitionerRole/requester-role"), "owner": ref("PractitionerRole/consultant-role"),
         "input": [{"type": {"text": "imaging"}, "valueReference": ref("ImagingStudy/isB")}]},
        {"resourceType": "ServiceRequest", "id": "c2", "status": "active", "intent": "order", "category": kind,
         "subject": ref("Patient/p2"), "requester": ref("PractitionerRole/unrelated-role"),
         "supportingInfo": [ref("ImagingStudy/isC")]},
    ]
    return out


class Server:
    def __init__(self, process: ServerProcess, studies: dict[str, data.Study]):
        self.process, self.studies = process, studies
        self.keys = KeyRing(Settings(data=process.data).keys_path())

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.process.port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.root}/dicomweb"

    @property
    def fhir(self) -> str:
        return self.process.base

    def token(self, scope: str, **claims) -> str:
        full = {"iss": self.fhir, "aud": self.fhir, "sub": claims.pop("sub", "test"), "client_id": "test-client",
                "scope": scope, **claims}
        return tokens.mint(self.keys, full, 3600)[0]

    def headers(self, role: str) -> dict[str, str]:
        """A bearer token for ``role``: ``system``, a patient (``p1``, ``p2``) or a practitioner."""
        if role == "system":
            token = self.token("system/*.*")
        elif role in ("p1", "p2"):
            token = self.token("patient/*.rs openid fhirUser", patient=role, fhirUser=f"Patient/{role}")
        else:
            token = self.token("user/*.cruds openid fhirUser", fhirUser=f"Practitioner/{role}")
        return {"Authorization": f"Bearer {token}"}


def start_server(tmp, pacs, **env) -> ServerProcess:
    data_dir = tmp / "data"
    data_dir.mkdir(parents=True)
    port = free_port()
    # dicomweb-client sends ``Host`` without the port: the public base URL is configured instead.
    settings = {"TELEMED_BASE_URL": f"http://127.0.0.1:{port}/fhir",
                "TELEMED_DICOMWEB_UPSTREAM": pacs.dicomweb if pacs else "", "TELEMED_DICOMWEB_USERNAME": orthanc.USER,
                "TELEMED_DICOMWEB_PASSWORD": orthanc.PASSWORD, "TELEMED_DICOMWEB_TIMEOUT": "20", **env}
    return ServerProcess(data_dir, port, env=settings).start()


@pytest.fixture(scope="session", params=STORES)
def server(request, pacs, tmp_path_factory):
    env = {}
    if request.param == "mongo":
        env["TELEMED_STORE"] = mongo_store_uri(request.getfixturevalue("mongo_uri"))
    process = start_server(tmp_path_factory.mktemp(f"dicomweb-{request.param}"), pacs, **env)
    studies = {k: data.study(2, patient=f"PAT-{k}", name=f"Test^PAT{k}") for k in "ABCD"}
    for s in studies.values():
        store_direct(pacs, s)
    srv = Server(process, studies)
    with httpx.Client(base_url=srv.fhir, headers=srv.headers("system"), timeout=30) as c:
        for r in world(studies):
            resp = c.put(f"/{r['resourceType']}/{r['id']}", json=r)
            assert resp.status_code in (200, 201), resp.text
    srv.store = request.param
    yield srv
    process.stop()


def client_for(server: Server, role: str, **params):
    """A dicomweb-client DICOMwebClient for ``role`` on the proxy."""
    import requests
    from dicomweb_client.api import DICOMwebClient

    session = requests.Session()
    session.headers.update(server.headers(role))
    session.params.update(params)
    return DICOMwebClient(server.dicomweb, session=session)
