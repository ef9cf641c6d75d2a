"""The Subscription resource: what is refused, what the server decides, who sees it (both stores)."""

from __future__ import annotations

import pytest

from fhir_server.subscriptions.subscription import GRANT, OWNER
from tests.fhir_server.subscriptions.conftest import TOPIC, subscription
from tests.tokens import auth

PRACTITIONER = {"fhirUser": "Practitioner/doc1", "sub": "doc1"}


@pytest.mark.parametrize("change, expression", [
    (lambda s: s.update(criteria="Task?status=requested"), "Subscription.criteria"),
    (lambda s: s["channel"].update(type="message"), "Subscription.channel.type"),
    (lambda s: s["channel"].update(endpoint="ftp://x"), "Subscription.channel.endpoint"),
    (lambda s: s["channel"].update(payload="application/fhir+xml"), "Subscription.channel.payload"),
    (lambda s: s["channel"].update(header=["no colon"]), "Subscription.channel.header"),
    (lambda s: s.update(_criteria={"extension": [{"url": "http://hl7.org/fhir/uv/subscriptions-backport/"
                                                  "StructureDefinition/backport-filter-criteria",
                                                  "valueString": "Patient?name=x"}]}),
     "Subscription.criteria.extension(backport-filter-criteria)"),
    (lambda s: s.update(_criteria={"extension": [{"url": "http://hl7.org/fhir/uv/subscriptions-backport/"
                                                  "StructureDefinition/backport-filter-criteria",
                                                  "valueString": "Task?description=x"}]}),
     "Subscription.criteria.extension(backport-filter-criteria)"),
])
async def test_subscriptions_the_server_cannot_serve_are_refused_naming_the_element(client, change, expression):
    body = subscription("task-status", "http://127.0.0.1:9/hook")
    change(body)
    r = await client.post("/Subscription", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    assert r.json()["issue"][0]["expression"] == [expression]


async def test_email_channel_needs_mailto(client):
    r = await client.post("/Subscription", json=subscription("task-status", "http://x", channel="email"))
    assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["Subscription.channel.endpoint"]


async def test_the_server_sets_status_owner_and_grant(client, app):
    body = subscription("task-status", "http://127.0.0.1:9/hook", status="active")
    body["meta"] = {"security": [{"system": OWNER, "code": "Practitioner/someone-else"}]}
    r = await client.post("/Subscription", json=body, headers=auth(app, "user/*.cruds", **PRACTITIONER))
    created = r.json()
    assert created["status"] == "requested"  # until the handshake succeeds
    assert {"system": OWNER, "code": "Practitioner/doc1"} in created["meta"]["security"]
    assert {"system": OWNER, "code": "Practitioner/someone-else"} not in created["meta"]["security"]
    grant = next(e for e in created["extension"] if e["url"] == GRANT)
    parts = {e["url"]: e["valueString"] for e in grant["extension"]}
    assert parts["fhirUser"] == "Practitioner/doc1" and parts["scope"] == "user/*.cruds"


async def test_only_the_owner_reads_searches_and_changes_a_subscription(client, app):
    mine = auth(app, "user/*.cruds", **PRACTITIONER)
    other = auth(app, "user/*.cruds", fhirUser="Practitioner/doc2", sub="doc2")
    created = (await client.post("/Subscription", json=subscription("task-status", "http://127.0.0.1:9/h"),
                                 headers=mine)).json()
    sid = created["id"]
    assert (await client.get(f"/Subscription/{sid}", headers=mine)).status_code == 200
    assert (await client.get(f"/Subscription/{sid}", headers=other)).status_code == 404
    assert (await client.get(f"/Subscription/{sid}/$status", headers=other)).status_code == 404
    assert (await client.get(f"/Subscription/{sid}/$events", headers=other)).status_code == 404
    found = (await client.get("/Subscription", headers=other)).json()
    assert found.get("total", len(found.get("entry", []))) == 0 and not found.get("entry")
    found = (await client.get("/Subscription", headers=mine)).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [sid]
    created["reason"] = "taken over"
    assert (await client.put(f"/Subscription/{sid}", json=created, headers=other)).status_code in (403, 404)
    # a system client (an administrator) sees every Subscription
    assert (await client.get(f"/Subscription/{sid}")).status_code == 200


async def test_changing_the_endpoint_asks_for_a_new_handshake(client, app):
    created = (await client.post("/Subscription", json=subscription("task-status", "http://127.0.0.1:9/h"))).json()
    created["channel"]["endpoint"] = "http://127.0.0.1:10/other"
    created["status"] = "active"
    updated = (await client.put(f"/Subscription/{created['id']}", json=created)).json()
    assert updated["status"] == "requested"


async def test_capability_statement_lists_topics_and_operations(client):
    cs = (await client.get("/metadata")).json()
    sub = next(r for r in cs["rest"][0]["resource"] if r["type"] == "Subscription")
    topics = {e["valueCanonical"] for e in sub.get("extension", [])
              if e["url"].endswith("capabilitystatement-subscriptiontopic-canonical")}
    assert topics == set(TOPIC.values())
    assert {"$status", "$events", "$get-ws-binding-token"} <= {"$" + o["name"] for o in sub["operation"]}
