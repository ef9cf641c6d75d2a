"""The authorization code flow with PKCE, driven as a browser would: the authorize URL, the
server's login form posted back, the redirect to the app, the code exchange, then FHIR calls
with the token. Standalone and EHR launches, OpenID Connect, and every refusal."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from jwcrypto import jwk

from fhir_server.auth import tokens
from tests.fhir_server.auth import smart_app
from tests.fhir_server.auth.smart_app import (BASE, PASSWORD, REDIRECT, ROOT, add_client, add_user, authorize_url,
                                              bearer, callback, exchange, launch, login, pkce, telemed)
from tests.fhir_server.server_process import ServerProcess
from tests.tokens import for_data_dir

APP_SCOPE = "launch launch/patient openid fhirUser offline_access patient/*.rs user/*.rs"


@pytest.fixture
async def app_client(svc) -> dict:
    return (await add_client(svc, scope=APP_SCOPE))[0]


@pytest.fixture
async def doctor(svc) -> dict:
    return await add_user(svc, "doctor", "Practitioner/d1")


async def test_practitioner_standalone_launch_picks_a_patient_and_reads_it(browser, app_client, doctor, patient_id):
    body = await launch(browser, app_client["client_id"], "launch/patient patient/*.rs", "doctor", patient=patient_id)
    assert body["token_type"] == "Bearer" and body["expires_in"] > 0
    assert body["patient"] == patient_id and body["need_patient_banner"] is True
    assert body["scope"] == "launch/patient patient/*.rs"
    claims = tokens.unverified_claims(body["access_token"])
    assert claims["aud"] == BASE and claims["iss"] == BASE and claims["sub"] == doctor["id"]
    assert claims["client_id"] == app_client["client_id"] and claims["patient"] == patient_id
    assert claims["fhirUser"] == f"{BASE}/Practitioner/d1"
    read = await browser.get(f"/fhir/Patient/{patient_id}", headers=bearer(body["access_token"]))
    assert read.status_code == 200 and read.json()["id"] == patient_id


async def test_practitioner_must_name_an_existing_patient(browser, app_client, doctor):
    _, challenge = pkce()
    url = authorize_url(ROOT, app_client["client_id"], "launch/patient patient/*.rs", challenge)
    response = await login(browser, url, "doctor", patient="no-such-patient")
    assert response.status_code == 400
    assert "There is no Patient no-such-patient" in smart_app.LoginForm(response.text).error


async def test_other_users_cannot_choose_a_patient(browser, svc, app_client, patient_id):
    await add_user(svc, "relative", "RelatedPerson/r1")
    _, challenge = pkce()
    url = authorize_url(ROOT, app_client["client_id"], "launch/patient patient/*.rs", challenge)
    params = callback(await login(browser, url, "relative", patient=patient_id))
    assert params["error"] == "access_denied"


async def test_credentials_in_the_query_string_are_not_used(browser, app_client, doctor):
    _, challenge = pkce()
    url = authorize_url(ROOT, app_client["client_id"], "user/*.rs", challenge, username="doctor", password=PASSWORD,
                        decision="allow")
    response = await browser.get(url)
    assert response.status_code == 200 and "<form" in response.text


async def test_patient_user_gets_their_own_patient_context(browser, svc, app_client, patient_id):
    await add_user(svc, "anna", f"Patient/{patient_id}")
    body = await launch(browser, app_client["client_id"], "launch/patient patient/*.rs", "anna", patient="ignored")
    assert body["patient"] == patient_id
    read = await browser.get(f"/fhir/Patient/{patient_id}", headers=bearer(body["access_token"]))
    assert read.status_code == 200


async def test_ehr_launch_gives_patient_encounter_and_fhir_context(browser, admin, app_client, doctor, patient_id):
    made = await browser.post("/admin/launch", headers=admin, json={
        "patient": patient_id, "encounter": "e1",
        "fhirContext": [{"reference": "ServiceRequest/sr1"}, {"reference": "Task/t1"}]})
    assert made.status_code == 201, made.text
    body = await launch(browser, app_client["client_id"], "launch openid fhirUser patient/*.rs", "doctor",
                        launch=made.json()["launch"])
    assert body["patient"] == patient_id and body["encounter"] == "e1"
    assert body["fhirContext"] == [{"reference": "ServiceRequest/sr1"}, {"reference": "Task/t1"}]
    claims = tokens.unverified_claims(body["access_token"])
    assert claims["patient"] == patient_id and claims["encounter"] == "e1"
    assert claims["fhirContext"] == body["fhirContext"]


async def test_ehr_launch_bound_to_another_user_is_denied(browser, admin, app_client, doctor, patient_id):
    made = await browser.post("/admin/launch", headers=admin,
                              json={"patient": patient_id, "fhirUser": "Practitioner/someone-else"})
    verifier, challenge = pkce()
    url = authorize_url(ROOT, app_client["client_id"], "launch patient/*.rs", challenge, launch=made.json()["launch"])
    params = callback(await login(browser, url, "doctor"))
    assert params["error"] == "access_denied" and params["state"] == "st-1"


async def test_unknown_launch_is_sent_back_as_invalid_request(browser, app_client):
    _, challenge = pkce()
    response = await browser.get(authorize_url(ROOT, app_client["client_id"], "launch patient/*.rs", challenge,
                                               launch="nope"))
    assert callback(response)["error"] == "invalid_request"


async def test_id_token_is_signed_and_names_the_user(browser, app_client, doctor):
    body = await launch(browser, app_client["client_id"], "openid fhirUser user/*.rs", "doctor", nonce="n-42")
    jwks = (await browser.get("/auth/jwks")).json()
    header = tokens.header_of(body["id_token"])
    assert header["alg"] == "RS256"
    key = jwk.JWK(**next(k for k in jwks["keys"] if k["kid"] == header["kid"]))
    claims = tokens.verify_signature(body["id_token"], key, ["RS256"])
    assert claims["iss"] == BASE and claims["aud"] == app_client["client_id"] and claims["sub"] == doctor["id"]
    assert claims["fhirUser"] == f"{BASE}/Practitioner/d1" and claims["nonce"] == "n-42"
    assert claims["exp"] > time.time()


async def test_no_id_token_without_openid(browser, app_client, doctor):
    body = await launch(browser, app_client["client_id"], "fhirUser user/*.rs", "doctor")
    assert "id_token" not in body


async def test_scopes_are_narrowed_to_the_client_registration(browser, svc, doctor):
    narrow, _ = await add_client(svc, scope="user/Observation.rs openid fhirUser")
    body = await launch(browser, narrow["client_id"], "user/Observation.rs user/Patient.cruds openid fhirUser "
                                                      "system/*.*", "doctor")
    assert body["scope"] == "user/Observation.rs openid fhirUser"


async def test_nothing_grantable_is_invalid_scope(browser, svc):
    narrow, _ = await add_client(svc, scope="user/Observation.rs")
    _, challenge = pkce()
    response = await browser.get(authorize_url(ROOT, narrow["client_id"], "system/*.*", challenge))
    assert callback(response)["error"] == "invalid_scope"


async def test_state_is_echoed_on_success_and_on_error(browser, app_client, doctor):
    verifier, challenge = pkce()
    url = authorize_url(ROOT, app_client["client_id"], "user/*.rs", challenge, state="xyz%&=1")
    params = callback(await login(browser, url, "doctor"))
    assert params["state"] == "xyz%&=1"
    denied = callback(await login(browser, url, "doctor", decision="deny"))
    assert denied == {"error": "access_denied", "error_description": "The user denied the request", "state": "xyz%&=1"}


async def test_redirect_keeps_the_registered_uri_query(browser, svc, doctor):
    registered = "https://app.example/cb?tenant=7"
    client, _ = await add_client(svc, scope="user/*.rs", redirect_uris=[registered])
    verifier, challenge = pkce()
    url = authorize_url(ROOT, client["client_id"], "user/*.rs", challenge, redirect_uri=registered)
    response = await login(browser, url, "doctor")
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == "https://app.example/cb"
    assert dict(parse_qsl(location.query))["tenant"] == "7"


async def test_authorize_post_sends_the_request_in_the_body(browser, app_client, doctor):
    verifier, challenge = pkce()
    params = dict(parse_qsl(urlsplit(authorize_url(ROOT, app_client["client_id"], "user/*.rs", challenge)).query))
    page = await browser.post("/auth/authorize", data=params)
    assert page.status_code == 200 and "<form" in page.text
    form = smart_app.LoginForm(page.text)
    answer = await browser.post(form.action, data={**form.fields, "username": "doctor", "password": PASSWORD,
                                                   "decision": "allow"})
    assert answer.status_code == 303
    token = await exchange(browser, ROOT, app_client["client_id"], callback(answer)["code"], verifier)
    assert token.status_code == 200


@pytest.mark.parametrize("change, message", [
    ({"client_id": "unknown"}, "Unknown client_id"),
    ({"redirect_uri": "https://evil.example/callback"}, "redirect_uri"),
    ({"redirect_uri": REDIRECT + "/"}, "redirect_uri"),
    ({"redirect_uri": None}, "redirect_uri"),
])
async def test_bad_client_or_redirect_uri_is_an_html_400_never_a_redirect(browser, app_client, change, message):
    _, challenge = pkce()
    args = {"redirect_uri": REDIRECT, **{k: v for k, v in change.items() if k != "client_id"}}
    url = authorize_url(ROOT, change.get("client_id", app_client["client_id"]), "user/*.rs", challenge, **args)
    response = await browser.get(url)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/html")
    assert "location" not in response.headers and message in response.text


@pytest.mark.parametrize("change, error", [
    ({"code_challenge_method": "plain"}, "invalid_request"),
    ({"code_challenge_method": None}, "invalid_request"),
    ({"code_challenge": None}, "invalid_request"),
    ({"code_challenge": "short"}, "invalid_request"),
    ({"aud": "https://other.example/fhir"}, "invalid_request"),
    ({"aud": None}, "invalid_request"),
    ({"response_type": "token"}, "unsupported_response_type"),
    ({"state": None}, "invalid_request"),
    ({"launch": None, "scope": "launch patient/*.rs"}, "invalid_request"),
])
async def test_invalid_request_is_redirected_back_with_an_error(browser, app_client, change, error):
    _, challenge = pkce()
    params = dict(parse_qsl(urlsplit(authorize_url(ROOT, app_client["client_id"], "user/*.rs", challenge)).query))
    for k, v in change.items():
        if v is None:
            params.pop(k, None)
        else:
            params[k] = v
    response = await browser.get("/auth/authorize", params=params)
    back = callback(response)
    assert response.headers["location"].startswith(REDIRECT + "?")
    assert back["error"] == error and back["error_description"]


async def test_parameter_given_twice_is_refused(browser, app_client):
    _, challenge = pkce()
    url = authorize_url(ROOT, app_client["client_id"], "user/*.rs", challenge) + "&scope=system/*.*"
    response = await browser.get(url)
    assert response.status_code == 400 and "more than once" in response.text


async def test_wrong_password_shows_the_form_again_with_401(browser, app_client, doctor):
    _, challenge = pkce()
    url = authorize_url(ROOT, app_client["client_id"], "user/*.rs", challenge)
    response = await login(browser, url, "doctor", password="wrong password")
    assert response.status_code == 401
    form = smart_app.LoginForm(response.text)
    assert form.error == "Wrong username or password"
    assert form.fields["username"] == "doctor" and "wrong password" not in response.text
    unknown = await login(browser, url, "nobody")
    assert unknown.status_code == 401


async def test_login_page_escapes_what_the_app_sent(browser, app_client):
    _, challenge = pkce()
    url = authorize_url(ROOT, app_client["client_id"], "user/*.rs", challenge, state='"><script>x</script>')
    page = await browser.get(url)
    assert "<script>" not in page.text and "&lt;script&gt;" in page.text
    assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"


@pytest.mark.req("CN-4.4")
async def test_wrong_code_verifier_is_invalid_grant(browser, app_client, doctor):
    _, challenge = pkce()
    other_verifier, _ = pkce()
    params = callback(await login(browser, authorize_url(ROOT, app_client["client_id"], "user/*.rs", challenge), "doctor"))
    token = await exchange(browser, ROOT, app_client["client_id"], params["code"], other_verifier)
    assert token.status_code == 400 and token.json()["error"] == "invalid_grant"
    assert token.headers["cache-control"] == "no-store"


@pytest.mark.req("CN-4.4")
async def test_reused_code_fails_and_revokes_the_tokens_it_gave(browser, app_client, doctor, patient_id):
    verifier, challenge = pkce()
    url = authorize_url(ROOT, app_client["client_id"], "user/*.rs offline_access", challenge)
    code = callback(await login(browser, url, "doctor"))["code"]
    first = await exchange(browser, ROOT, app_client["client_id"], code, verifier)
    assert first.status_code == 200
    access = first.json()["access_token"]
    assert (await browser.get(f"/fhir/Patient/{patient_id}", headers=bearer(access))).status_code == 200
    again = await exchange(browser, ROOT, app_client["client_id"], code, verifier)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert (await browser.get(f"/fhir/Patient/{patient_id}", headers=bearer(access))).status_code == 401
    refreshed = await browser.post("/auth/token", data={"grant_type": "refresh_token", "client_id": app_client["client_id"],
                                                        "refresh_token": first.json()["refresh_token"]})
    assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"


@pytest.mark.req("CN-4.4")
async def test_code_of_another_client_or_redirect_is_refused(browser, svc, app_client, doctor):
    other, _ = await add_client(svc, scope="user/*.rs")
    verifier, challenge = pkce()
    url = authorize_url(ROOT, app_client["client_id"], "user/*.rs", challenge)
    code = callback(await login(browser, url, "doctor"))["code"]
    stolen = await exchange(browser, ROOT, other["client_id"], code, verifier)
    assert stolen.status_code == 400 and stolen.json()["error"] == "invalid_grant"
    code = callback(await login(browser, url, "doctor"))["code"]
    moved = await exchange(browser, ROOT, app_client["client_id"], code, verifier, redirect_uri="https://app.example/x")
    assert moved.status_code == 400 and moved.json()["error"] == "invalid_grant"


async def test_code_expires(app, settings, svc, browser, app_client, doctor):
    svc.settings = settings.model_copy(update={"authorization_code_seconds": 1})
    verifier, challenge = pkce()
    code = callback(await login(browser, authorize_url(ROOT, app_client["client_id"], "user/*.rs", challenge),
                                "doctor"))["code"]
    await asyncio.sleep(1.2)
    late = await exchange(browser, ROOT, app_client["client_id"], code, verifier)
    assert late.status_code == 400 and late.json()["error"] == "invalid_grant"


async def test_confidential_client_authenticates_with_basic_or_post(browser, svc, doctor):
    client, secret = await add_client(svc, type="confidential-symmetric", scope="user/*.rs")
    for how in ("basic", "post", "none", "wrong"):
        verifier, challenge = pkce()
        code = callback(await login(browser, authorize_url(ROOT, client["client_id"], "user/*.rs", challenge),
                                    "doctor"))["code"]
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "code_verifier": verifier}
        if how == "basic":
            token = await browser.post("/auth/token", data=data, auth=(client["client_id"], secret))
            assert token.status_code == 200, token.text
        elif how == "post":
            token = await browser.post("/auth/token", data={**data, "client_id": client["client_id"],
                                                            "client_secret": secret})
            assert token.status_code == 200, token.text
        elif how == "none":
            token = await browser.post("/auth/token", data={**data, "client_id": client["client_id"]})
            assert token.status_code == 401 and token.json()["error"] == "invalid_client"
        else:
            token = await browser.post("/auth/token", data=data, auth=(client["client_id"], "not-the-secret"))
            assert token.status_code == 401 and token.json()["error"] == "invalid_client"
            assert token.headers["www-authenticate"].startswith("Basic")


async def test_full_launch_over_real_http_following_redirects(tmp_path):
    """uvicorn in its own process; the app's callback is a real HTTP endpoint the browser lands on."""
    import http.server
    import threading

    landed: list[str] = []

    class Callback(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            landed.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"app received the code")

        def log_message(self, *args):
            pass

    app_server = http.server.HTTPServer(("127.0.0.1", 0), Callback)
    threading.Thread(target=app_server.serve_forever, daemon=True).start()
    redirect = f"http://127.0.0.1:{app_server.server_port}/callback"
    data = tmp_path / "data"
    server = ServerProcess(data)
    try:
        added = telemed("client", "add", "--data", str(data), "--name", "Real app", "--public",
                        "--redirect-uri", redirect, "--scope", "launch/patient patient/*.rs openid fhirUser")
        assert added.returncode == 0, added.stderr
        client_id = added.stdout.split("client_id: ")[1].split()[0]
        user = telemed("user", "add", "--data", str(data), "--username", "doc", "--password-stdin",
                       "--fhir-user", "Practitioner/d1", input=PASSWORD + "\n")
        assert user.returncode == 0, user.stderr
        server.start()
        root = server.base.removesuffix("/fhir")
        async with httpx.AsyncClient(timeout=30, follow_redirects=True) as real:
            created = await real.post(f"{server.base}/Patient", headers=for_data_dir(data, server.base),
                                      json={"resourceType": "Patient", "name": [{"family": "Real"}]})
            assert created.status_code == 201, created.text
            patient_id = created.json()["id"]
            verifier, challenge = pkce()
            url = authorize_url(root, client_id, "launch/patient patient/*.rs openid fhirUser", challenge,
                                redirect_uri=redirect)
            landing = await login(real, url, "doc", patient=patient_id)
            assert landing.status_code == 200 and landing.text == "app received the code"
            assert [r.status_code for r in landing.history] == [303]
            params = dict(parse_qsl(urlsplit(landed[0]).query))
            token = await exchange(real, root, client_id, params["code"], verifier, redirect_uri=redirect)
            assert token.status_code == 200, token.text
            body = token.json()
            assert body["patient"] == patient_id and "id_token" in body
            read = await real.get(f"{server.base}/Patient/{patient_id}", headers=bearer(body["access_token"]))
            assert read.status_code == 200
    finally:
        server.stop()
        app_server.shutdown()

