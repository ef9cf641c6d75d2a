"""The PACS down, slow or not configured: 502, 504 and 503 with an OperationOutcome, quickly,
and a failed STOW leaves no ImagingStudy behind. In-process app, no Orthanc needed."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest

from dicomweb.upstream import query_string
from fhir_server.app import create_app
from fhir_server.auth.consultation import KIND
from fhir_server.settings import Settings
from tests.dicomweb import data
from tests.fhir_server.server_process import free_port
from tests.tokens import auth

pytestmark = pytest.mark.req("UA-V.1")


class SilentServer:
    """Accepts connections and never answers (a hung PACS)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


async def _client(tmp_path, upstream: str, timeout: float = 0.5, store: str = ""):
    app = create_app(Settings(data=tmp_path, store=store, dicomweb_upstream=upstream, dicomweb_timeout=timeout))
    return app, httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver",
                                  headers=auth(app))


async def test_a_pacs_that_is_down_gives_502_with_a_json_error(tmp_path):
    app, client = await _client(tmp_path, f"http://127.0.0.1:{free_port()}/dicom-web")
    async with app.router.lifespan_context(app), client:
        for url in ("/dicomweb/studies", "/dicomweb/studies/1.2.3/metadata", "/dicomweb/studies/1.2.3"):
            r = await client.get(url)
            assert r.status_code == 502, (url, r.text)
            assert r.json()["issue"][0]["code"] == "exception"


async def test_a_pacs_that_does_not_answer_gives_504_within_the_timeout(tmp_path):
    silent = SilentServer()
    try:
        app, client = await _client(tmp_path, f"http://127.0.0.1:{silent.port}/dicom-web", timeout=0.5)
        async with app.router.lifespan_context(app), client:
            for url in ("/dicomweb/studies/1.2.3", "/dicomweb/studies", "/dicomweb/studies/1.2.3/metadata"):
                start = time.monotonic()
                r = await client.get(url)
                assert r.status_code == 504, (url, r.text)
                assert r.json()["issue"][0]["code"] == "timeout"
                assert time.monotonic() - start < 3
    finally:
        silent.close()


async def test_without_a_configured_pacs_dicomweb_answers_503(tmp_path):
    app, client = await _client(tmp_path, "")
    async with app.router.lifespan_context(app), client:
        r = await client.get("/dicomweb/studies")
        assert r.status_code == 503
        assert "TELEMED_DICOMWEB_UPSTREAM" in r.json()["issue"][0]["diagnostics"]


async def test_a_failed_stow_leaves_no_imaging_study_and_no_link(settings):
    # ``settings``: one run per store (tests/conftest.py).
    app, client = await _client(settings.data, f"http://127.0.0.1:{free_port()}/dicom-web", store=settings.store)
    async with app.router.lifespan_context(app), client:
        await client.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1",
                                                   "identifier": [{"system": "urn:mrn", "value": "PAT1"}]})
        sr = {"resourceType": "ServiceRequest", "id": "c1", "status": "active", "intent": "order",
              "category": [{"coding": [{"system": KIND, "code": "doctor-doctor"}]}],
              "subject": {"reference": "Patient/p1"}}
        assert (await client.put("/fhir/ServiceRequest/c1", json=sr)).status_code == 201
        study = data.study(1, patient="PAT1")
        r = await client.post("/dicomweb/studies", params={"request": "ServiceRequest/c1"}, content=study.body(),
                              headers={"Content-Type": data.CONTENT_TYPE})
        assert r.status_code == 502
        assert (await client.get("/fhir/ImagingStudy")).json().get("total", 0) == 0
        assert "supportingInfo" not in (await client.get("/fhir/ServiceRequest/c1")).json()


def test_query_values_keep_dicom_matching_characters_and_spaces_become_wildcards():
    assert query_string([("PatientName", "A^B*"), ("StudyInstanceUID", "1.2,3.4"), ("limit", "2")]) == \
        "PatientName=A^B*&StudyInstanceUID=1.2,3.4&limit=2"
    assert query_string([("StudyDescription", "CT head&neck")]) == "StudyDescription=CT?head%26neck"
