"""Per-organisation deadline policies (RU-19, UA-VI.12): rules per form of care and profile,
the organisation's time zone for "end of the day", and the regulation's upper bounds."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from fhir_server.errors import OperationOutcomeError
from operations.consult import deadline

RECEIVED = datetime(2026, 12, 5, 20, 0, tzinfo=timezone.utc)
CARDIOLOGY = {"system": "http://snomed.info/sct", "code": "394579002"}


def rule(form: str, value: float | None = None, unit: str = "min", specialty: dict | None = None) -> dict:
    parts = [{"url": "form-of-care", "valueCode": form}]
    if value is not None:
        parts.append({"url": "deadline", "valueDuration": {"value": value, "unit": unit,
                                                           "system": "http://unitsofmeasure.org", "code": unit}})
    if specialty:
        parts.append({"url": "specialty", "valueCodeableConcept": {"coding": [specialty]}})
    return {"url": deadline.POLICY, "extension": parts}


def org(*rules: dict, zone: str | None = None) -> dict:
    exts = list(rules) + ([{"url": deadline.TIMEZONE, "valueCode": zone}] if zone else [])
    return {"resourceType": "Organization", "id": "o", "extension": exts}


@pytest.mark.req("RU-19")
def test_without_a_policy_the_regulation_defaults_hold():
    assert deadline.due("stat", RECEIVED) == RECEIVED + timedelta(hours=2)
    assert deadline.due("urgent", RECEIVED) == RECEIVED + timedelta(hours=24)
    assert deadline.due("routine", RECEIVED) == datetime(2026, 12, 5, 23, 59, 59, 999999, tzinfo=timezone.utc)


@pytest.mark.req("RU-19")
def test_an_organisation_shortens_the_emergency_deadline():
    p = deadline.policy(org(rule("emergency", 30)))
    assert deadline.due("stat", RECEIVED, p) == RECEIVED + timedelta(minutes=30)
    assert deadline.due("urgent", RECEIVED, p) == RECEIVED + timedelta(hours=24)


@pytest.mark.req("UA-VI.12")
def test_planned_requests_are_due_at_the_end_of_the_local_day_of_receipt():
    # 20:00 UTC is 03:00 the next day in Novokuznetsk (UTC+7): due at the end of that local day.
    p = deadline.policy(org(zone="Asia/Novokuznetsk"))
    assert deadline.due("routine", RECEIVED, p) == datetime(2026, 12, 6, 16, 59, 59, 999999, tzinfo=timezone.utc)


@pytest.mark.req("RU-19")
def test_a_planned_deadline_is_configurable_per_profile():
    p = deadline.policy(org(rule("planned", 3, "d"), rule("planned", 1, "d", CARDIOLOGY)))
    cardiology = frozenset({(CARDIOLOGY["system"], CARDIOLOGY["code"])})
    assert deadline.due("routine", RECEIVED, p, cardiology) == RECEIVED + timedelta(days=1)
    assert deadline.due("routine", RECEIVED, p) == RECEIVED + timedelta(days=3)


def test_profiles_of_a_request_come_from_its_code_and_performer_type():
    sr = {"code": {"coding": [CARDIOLOGY]}, "performerType": {"coding": [{"system": "s", "code": "c"}]}}
    assert deadline.profiles_of(sr) == {(CARDIOLOGY["system"], CARDIOLOGY["code"]), ("s", "c")}


@pytest.mark.req("RU-19")
@pytest.mark.parametrize("bad, says", [
    (rule("emergency", 3, "h"), "within 2 hours"),
    (rule("urgent", 2, "d"), "within 24 hours"),
    (rule("emergency"), "within 2 hours"),  # end of day is no emergency deadline
    (rule("soon", 1, "h"), "form-of-care must be one of"),
    (rule("planned", -1, "h"), "positive Duration"),
    (rule("planned", 1, "wk"), "positive Duration"),
])
def test_a_policy_longer_than_the_regulation_or_malformed_is_refused(bad, says):
    with pytest.raises(OperationOutcomeError) as e:
        deadline.check_policy(org(rule("planned", 2, "d"), bad))
    issue = e.value.issues[0]
    assert e.value.status == 422 and says in issue["diagnostics"]
    assert issue["expression"] == ["Organization.extension[1]"]
    # what cannot be enforced is not applied either
    assert len(deadline.policy(org(rule("planned", 2, "d"), bad)).rules) == 1


def test_an_unknown_time_zone_is_refused_and_utc_is_used():
    with pytest.raises(OperationOutcomeError) as e:
        deadline.check_policy(org(zone="Mars/Olympus"))
    assert e.value.issues[0]["expression"] == ["Organization.extension[0]"]
    assert deadline.policy(org(zone="Mars/Olympus")).zone == timezone.utc


@pytest.mark.req("RU-19")
async def test_the_invited_organisations_policy_sets_the_due_time(desk, client):
    org_b = (await client.get("/Organization/orgB")).json()
    r = await client.put("/Organization/orgB", json={**org_b, "extension": [rule("urgent", 3, "h")]})
    assert r.status_code == 200, r.text
    task = await desk.submit("sr1")  # urgent, invited to orgB
    period = task["restriction"]["period"]
    assert deadline.parse_instant(period["end"]) - deadline.parse_instant(period["start"]) == timedelta(hours=3)


@pytest.mark.req("RU-19")
async def test_an_organisation_with_a_policy_beyond_the_regulation_is_refused(client):
    body = org(rule("emergency", 3, "h"))
    r = await client.put("/Organization/o", json=body)
    assert r.status_code == 422, r.text
    issue = r.json()["issue"][0]
    assert issue["expression"] == ["Organization.extension[0]"] and "2 hours" in issue["diagnostics"]
    # nothing was written
    assert (await client.get("/Organization/o")).status_code == 404
