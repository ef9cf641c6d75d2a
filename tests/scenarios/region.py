"""A consulting region over real HTTP, for the workflow scenarios (issue 5).

A server process (uvicorn through ``telemed serve``, on either store) mailing through a real
SMTP server process; its people enrolled through the admin API and each logged in as their EHR
app would: the SMART authorization code flow with PKCE through the server's own login form.
Every call a scenario makes is then an HTTP request with that person's access token.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import httpx

from tests.fhir_server.auth.smart_app import (PASSWORD, REDIRECT, assertion, client_credentials, launch, new_key,
                                              public_jwks)
from tests.fhir_server.server_process import ServerProcess
from tests.fhir_server.subscriptions.smtp import SMTPSink
from tests.operations.consult.conftest import parameters, ref  # noqa: F401 - ref for the scenarios

SCOPE = "openid fhirUser user/*.cruds"


@dataclass
class Person:
    """One logged-in user: an HTTP client to the FHIR base carrying their access token."""

    username: str
    fhir_user: str
    http: httpx.AsyncClient

    async def op(self, path: str, **values) -> httpx.Response:
        """``POST [base]/{path}`` with a Parameters body (``Task/1/$accept``...)."""
        return await self.http.post(f"/{path}", json=parameters(**values))

    async def get(self, path: str, **params) -> httpx.Response:
        return await self.http.get(f"/{path}", params=params)

    async def read(self, reference: str) -> dict:
        r = await self.http.get(f"/{reference}")
        assert r.status_code == 200, r.text
        return r.json()


@dataclass
class Region:
    server: ServerProcess
    sink: SMTPSink
    client_id: str = ""
    users: dict[str, str] = field(default_factory=dict)  # username -> fhirUser
    people: dict[str, Person] = field(default_factory=dict)

    @property
    def root(self) -> str:
        return self.server.base.removesuffix("/fhir")

    def admin(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.server.base, headers=self.server.headers, timeout=30)

    async def load(self, resources: list[dict]) -> None:
        """The region's reference data, in one transaction (PUT with their ids)."""
        bundle = {"resourceType": "Bundle", "type": "transaction",
                  "entry": [{"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
                            for r in resources]}
        async with self.admin() as http:
            r = await http.post("", json=bundle)
        assert r.status_code == 200, r.text

    async def enrol(self, users: dict[str, str]) -> None:
        """User accounts (username -> fhirUser) and the EHR app they log in with."""
        async with httpx.AsyncClient(base_url=self.root, headers=self.server.headers, timeout=30) as http:
            for username, fhir_user in users.items():
                r = await http.post("/admin/users", json={"username": username, "password": PASSWORD,
                                                          "fhirUser": fhir_user})
                assert r.status_code == 201, r.text
                self.users[username] = fhir_user
            if not self.client_id:
                r = await http.post("/admin/clients", json={"name": "Regional EHR", "redirect_uris": [REDIRECT],
                                                            "scope": f"{SCOPE} offline_access"})
                assert r.status_code == 201, r.text
                self.client_id = r.json()["client_id"]

    async def login(self, username: str) -> Person:
        """``username`` logged in through the authorization code flow (cached per scenario)."""
        if username not in self.people:
            async with httpx.AsyncClient(timeout=30) as browser:
                body = await launch(browser, self.client_id, SCOPE, username, root=self.root)
            http = httpx.AsyncClient(base_url=self.server.base, timeout=30,
                                     headers={"Authorization": f"Bearer {body['access_token']}",
                                              "Accept": "application/fhir+json"})
            self.people[username] = Person(username, self.users[username], http)
        return self.people[username]

    async def service(self, name: str, scope: str) -> Person:
        """A backend service (e.g. an organisation's signing service) registered with its public
        key and logged in by SMART Backend Services: a signed assertion for a ``scope`` token."""
        key = new_key("ES384")
        async with httpx.AsyncClient(base_url=self.root, headers=self.server.headers, timeout=30) as http:
            r = await http.post("/admin/clients", json={"name": name, "type": "confidential-asymmetric",
                                                        "redirect_uris": [], "scope": scope, "jwks": public_jwks(key)})
            assert r.status_code == 201, r.text
            client_id = r.json()["client_id"]
        async with httpx.AsyncClient(timeout=30) as http:
            token_url = f"{self.root}/auth/token"
            r = await http.post(token_url, data=client_credentials(client_id, assertion(key, client_id, token_url), scope))
            assert r.status_code == 200, r.text
        http = httpx.AsyncClient(base_url=self.server.base, timeout=30,
                                 headers={"Authorization": f"Bearer {r.json()['access_token']}",
                                          "Accept": "application/fhir+json"})
        self.people[name] = Person(name, "", http)
        return self.people[name]

    async def mails(self, to: str, subject_has: str = "", timeout: float = 15) -> list[dict]:
        """The messages the SMTP server received for ``to`` (waiting up to ``timeout`` s for one)."""
        for _ in range(int(timeout / 0.1)):
            got = [m for m in self.sink.messages() if to in (m["to"] or "") and subject_has in m["subject"]]
            if got:
                return got
            await asyncio.sleep(0.1)
        return []

    async def close(self) -> None:
        for person in self.people.values():
            await person.http.aclose()
