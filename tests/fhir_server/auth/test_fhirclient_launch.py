"""The Python ``fhirclient`` library (SMART on FHIR's own, 4.x) doing a real standalone launch
against a running server: it builds the authorize URL with PKCE, an httpx "browser" logs in on
the server's form, and the library exchanges the redirect's code and reads with the token."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from fhirclient import client as fc_client
from fhirclient.models.observation import Observation

from tests.fhir_server.auth.smart_app import PASSWORD, REDIRECT, LoginForm, telemed
from tests.fhir_server.server_process import ServerProcess
from tests.tokens import for_data_dir

SCOPE = "openid fhirUser offline_access patient/*.rs"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("fhirclient") / "data"
    added = telemed("client", "add", "--data", str(data), "--name", "fhirclient app", "--public", "--redirect-uri",
                    REDIRECT, "--scope", f"launch/patient {SCOPE}")
    assert added.returncode == 0, added.stderr
    user = telemed("user", "add", "--data", str(data), "--username", "dr.sidorov", "--password-stdin",
                   "--fhir-user", "Practitioner/d1", input=PASSWORD + "\n")
    assert user.returncode == 0, user.stderr
    proc = ServerProcess(data).start()
    proc.client_id = added.stdout.split("client_id: ")[1].split()[0]
    admin = for_data_dir(data, proc.base)
    patient = httpx.post(f"{proc.base}/Patient", headers=admin,
                         json={"resourceType": "Patient", "name": [{"family": "Sidorova", "given": ["Olga"]}]})
    assert patient.status_code == 201, patient.text
    proc.patient_id = patient.json()["id"]
    obs = httpx.post(f"{proc.base}/Observation", headers=admin, json={
        "resourceType": "Observation", "status": "final", "code": {"text": "pulse"},
        "subject": {"reference": f"Patient/{proc.patient_id}"}, "valueQuantity": {"value": 72, "unit": "/min"}})
    assert obs.status_code == 201, obs.text
    proc.observation_id = obs.json()["id"]
    yield proc
    proc.stop()


def _browse(authorize_url: str, patient_id: str) -> str:
    """The user's browser: open the authorize URL, log in, pick the patient; the redirect URL."""
    with httpx.Client(timeout=30) as browser:
        page = browser.get(authorize_url)
        assert page.status_code == 200, page.text
        form = LoginForm(page.text)
        answer = browser.post(form.action, data={**form.fields, "username": "dr.sidorov", "password": PASSWORD,
                                                 "patient": patient_id, "decision": "allow"})
        assert answer.status_code == 303, answer.text
        return answer.headers["location"]


def _client_from_smart_configuration(server) -> fc_client.FHIRClient:
    """fhirclient 4.x finds endpoints only in the CapabilityStatement; a SMART 2 app reads the
    .well-known document, so the library is given what it says."""
    conf = httpx.get(f"{server.base}/.well-known/smart-configuration").json()
    api_base = server.base + "/"
    return fc_client.FHIRClient(state={
        "app_id": server.client_id, "scope": SCOPE, "redirect": REDIRECT,
        "server": {"base_uri": api_base, "auth_type": "oauth2", "auth": {
            "app_id": server.client_id, "aud": api_base, "redirect_uri": REDIRECT,
            "authorize_uri": conf["authorization_endpoint"], "token_uri": conf["token_endpoint"]}}})


@pytest.mark.req("UA-III.5")
def test_fhirclient_standalone_launch_reads_the_chosen_patient(server):
    smart = _client_from_smart_configuration(server)
    url = smart.authorize_url
    params = dict(parse_qsl(urlsplit(url).query))
    assert params["code_challenge_method"] == "S256" and params["scope"].startswith("launch/patient")
    smart.handle_callback(_browse(url, server.patient_id))
    assert smart.ready and smart.patient_id == server.patient_id
    assert smart.launch_context["scope"] == f"launch/patient {SCOPE}"
    assert smart.launch_context["need_patient_banner"] is True
    assert smart.patient.name[0].family == "Sidorova"
    found = list(Observation.where({"patient": server.patient_id}).perform_resources_iter(smart.server))
    assert [o.id for o in found] == [server.observation_id]


def test_fhirclient_refreshes_its_token(server):
    smart = _client_from_smart_configuration(server)
    smart.handle_callback(_browse(smart.authorize_url, server.patient_id))
    first = smart.server.auth.access_token
    assert smart.reauthorize()
    assert smart.server.auth.access_token != first
    assert Observation.read(server.observation_id, smart.server).valueQuantity.value == 72


def test_fhirclient_discovers_the_endpoints_in_the_capability_statement(server):
    smart = fc_client.FHIRClient(settings={"app_id": server.client_id, "api_base": server.base + "/",
                                           "redirect_uri": REDIRECT, "scope": SCOPE})
    url = smart.authorize_url
    assert url and url.startswith(server.base.removesuffix("/fhir") + "/auth/authorize?")
    smart.handle_callback(_browse(url, server.patient_id))
    assert smart.patient.name[0].family == "Sidorova"
