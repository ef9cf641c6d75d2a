"""Brute-force protection: the token endpoint (and the login form) allow ``token_rate_limit``
requests a minute per (client_id, client IP), then answer 429 with Retry-After."""

from __future__ import annotations

import httpx
import pytest

from fhir_server.app import create_app
from fhir_server.auth.ratelimit import SlidingWindow
from tests.fhir_server.auth.smart_app import ROOT, add_client, authorize_url, login, pkce


def test_sliding_window_allows_limit_hits_per_window_per_key():
    now = [1000.0]
    window = SlidingWindow(3, 60.0, clock=lambda: now[0])
    assert [window.hit("a") for _ in range(3)] == [None, None, None]
    assert window.hit("a") == pytest.approx(60.0)
    assert window.hit("b") is None
    now[0] += 30
    assert window.hit("a") == pytest.approx(30.0)
    now[0] += 30.5
    assert window.hit("a") is None  # the first hit left the window
    assert window.hit("a") is None and window.hit("a") is None
    assert window.hit("a") is not None


def test_refused_hits_do_not_extend_the_wait():
    now = [0.0]
    window = SlidingWindow(1, 10.0, clock=lambda: now[0])
    window.hit("k")
    for _ in range(5):
        now[0] += 1
        window.hit("k")
    now[0] = 10.0
    assert window.hit("k") is None


@pytest.fixture
async def limited(settings):
    application = create_app(settings.model_copy(update={"token_rate_limit": 3}))
    async with application.router.lifespan_context(application):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url=ROOT) as c:
            yield application, c


@pytest.mark.req("CN-4.4")
async def test_token_endpoint_answers_429_past_the_limit(limited):
    app, http = limited
    svc = app.state.services
    client, secret = await add_client(svc, type="confidential-symmetric", scope="system/*.rs", redirect_uris=[],
                                      grant_types=["client_credentials"])
    wrong = {"grant_type": "client_credentials", "scope": "system/*.rs", "client_id": client["client_id"],
             "client_secret": "guess"}
    for _ in range(3):
        assert (await http.post("/auth/token", data=wrong)).status_code == 401
    limited_response = await http.post("/auth/token", data={**wrong, "client_secret": secret})
    assert limited_response.status_code == 429
    assert 1 <= int(limited_response.headers["retry-after"]) <= 60
    assert limited_response.headers["cache-control"] == "no-store"
    assert limited_response.json()["error"] == "slow_down"
    other, other_secret = await add_client(svc, type="confidential-symmetric", scope="system/*.rs",
                                           redirect_uris=[], grant_types=["client_credentials"])
    fine = await http.post("/auth/token", data={**wrong, "client_id": other["client_id"], "client_secret": other_secret})
    assert fine.status_code == 200, fine.text  # the limit is per client


async def test_limit_is_per_client_ip(limited):
    app, http = limited
    svc = app.state.services
    client, _ = await add_client(svc, scope="user/*.rs")
    data = {"grant_type": "authorization_code", "client_id": client["client_id"], "code": "x", "redirect_uri": "x",
            "code_verifier": "v" * 43}
    for _ in range(3):
        assert (await http.post("/auth/token", data=data)).status_code == 400
    assert (await http.post("/auth/token", data=data)).status_code == 429
    elsewhere = httpx.ASGITransport(app=app, client=("10.0.0.9", 4000))
    async with httpx.AsyncClient(transport=elsewhere, base_url=ROOT) as other_ip:
        assert (await other_ip.post("/auth/token", data=data)).status_code == 400


@pytest.mark.req("CN-4.4")
async def test_login_form_is_rate_limited(limited):
    app, http = limited
    svc = app.state.services
    client, _ = await add_client(svc, scope="user/*.rs")
    _, challenge = pkce()
    url = authorize_url(ROOT, client["client_id"], "user/*.rs", challenge)
    for _ in range(3):
        assert (await login(http, url, "nobody", password="guess-guess")).status_code == 401
    blocked = await login(http, url, "nobody", password="guess-guess")
    assert blocked.status_code == 429 and "Too many attempts" in blocked.text
