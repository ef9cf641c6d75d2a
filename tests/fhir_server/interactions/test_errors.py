"""Bad requests: each gets a clear 4xx OperationOutcome, never a 500, and nothing is written."""

from __future__ import annotations

import json

import orjson
import pytest

from tests.fhir_server.interactions.conftest import (
    assert_outcome, create, patient, writes_so_far,
)

FHIR = {"Content-Type": "application/fhir+json"}


def nested_extension(depth: int) -> dict:
    ext: dict = {"url": "http://example.org/leaf", "valueString": "x"}
    for _ in range(depth):
        ext = {"url": "http://example.org/node", "extension": [ext]}
    return ext


async def send(client, method: str, url: str, content: bytes, headers: dict | None = None):
    return await client.request(method, url, content=content, headers={**FHIR, **(headers or {})})


@pytest.fixture
async def existing(client) -> dict:
    return await create(client, patient())


WRITES = [("POST", "/Patient"), ("PUT", "/Patient/p-1"), ("POST", "/")]


@pytest.mark.parametrize("method,url", WRITES)
async def test_malformed_json_is_400(client, method, url):
    r = await send(client, method, url, b'{"resourceType": "Patient",')

    assert_outcome(r, 400, "structure")
    assert await writes_so_far(client) == 0


@pytest.mark.parametrize("method,url", WRITES)
async def test_empty_body_is_400(client, method, url):
    r = await send(client, method, url, b"")

    assert_outcome(r, 400, "structure")
    assert await writes_so_far(client) == 0


@pytest.mark.parametrize("method,url", WRITES)
async def test_json_array_body_is_400(client, method, url):
    r = await send(client, method, url, b'[{"resourceType": "Patient"}]')

    assert_outcome(r, 400)
    assert await writes_so_far(client) == 0


@pytest.mark.parametrize("ctype", ["text/plain", "application/xml", "application/fhir+xml"])
@pytest.mark.parametrize("method,url", WRITES)
async def test_wrong_content_type_is_415(client, method, url, ctype):
    r = await send(client, method, url, orjson.dumps(patient(id="p-1")), {"Content-Type": ctype})

    assert_outcome(r, 415, "not-supported")
    assert await writes_so_far(client) == 0


async def test_missing_content_type_is_415(client):
    r = await client.post("/Patient", content=orjson.dumps(patient()))

    assert_outcome(r, 415, "not-supported")


async def test_json_content_type_with_charset_is_accepted(client):
    r = await send(client, "POST", "/Patient", orjson.dumps(patient()),
                   {"Content-Type": "application/fhir+json; charset=utf-8"})

    assert r.status_code == 201


@pytest.mark.parametrize("method,url", [("GET", "/Unicorn/1"), ("POST", "/Unicorn"), ("GET", "/Unicorn"),
                                        ("DELETE", "/Unicorn/1"), ("GET", "/Unicorn/1/_history")])
async def test_unknown_type_in_url_is_404(client, method, url):
    r = await send(client, method, url, b'{"resourceType": "Unicorn"}' if method == "POST" else b"")

    assert_outcome(r, 404, "not-found")


async def test_unknown_element_is_422_naming_it(client):
    r = await send(client, "POST", "/Patient", orjson.dumps(patient(foo="bar")))

    assert_outcome(r, 422, "structure", "Patient.foo")
    assert await writes_so_far(client) == 0


async def test_unknown_nested_element_is_422_naming_its_path(client):
    r = await send(client, "POST", "/Patient", orjson.dumps(patient(name=[{"family": "X", "nickname": "Y"}])))

    assert_outcome(r, 422, "structure", "Patient.name[0].nickname")


async def test_invalid_date_is_422_naming_the_element(client):
    r = await send(client, "POST", "/Patient", orjson.dumps(patient(birthDate="1970-02-30")))

    assert_outcome(r, 422, "value", "Patient.birthDate")
    assert await writes_so_far(client) == 0


async def test_invalid_code_is_422_naming_the_element(client):
    r = await send(client, "POST", "/Patient", orjson.dumps(patient(gender="robot")))

    assert_outcome(r, 422, "code-invalid", "Patient.gender")


async def test_missing_resource_type_is_400(client):
    r = await send(client, "POST", "/Patient", b'{"name": [{"family": "X"}]}')

    assert_outcome(r, 400, "invalid", "resourceType")


async def test_invalid_update_writes_nothing(client, existing):
    r = await send(client, "PUT", f"/Patient/{existing['id']}", orjson.dumps({**existing, "birthDate": "soon"}))

    assert_outcome(r, 422, "value", "Patient.birthDate")
    assert await writes_so_far(client) == 1


async def test_body_over_the_limit_is_413(make_client):
    async with make_client(max_body_bytes=1000) as client:
        big = patient(name=[{"family": "x" * 2000}])

        r = await send(client, "POST", "/Patient", orjson.dumps(big))
        assert_outcome(r, 413, "too-long")
        r = await send(client, "POST", "/", orjson.dumps({"resourceType": "Bundle", "type": "batch", "entry": [
            {"resource": big, "request": {"method": "POST", "url": "Patient"}}]}))
        assert_outcome(r, 413, "too-long")
        assert await writes_so_far(client) == 0
        assert (await send(client, "POST", "/Patient", orjson.dumps(patient()))).status_code == 201


async def test_body_over_the_limit_without_content_length_is_413(make_client):
    async def chunks():
        for _ in range(10):
            yield b" " * 200
        yield orjson.dumps(patient())

    async with make_client(max_body_bytes=1000) as client:
        r = await client.post("/Patient", content=chunks(), headers=FHIR)

        assert_outcome(r, 413, "too-long")
        assert await writes_so_far(client) == 0


async def test_nesting_200_deep_is_refused(client):
    body = json.dumps(patient(extension=[nested_extension(200)])).encode()  # orjson.dumps stops at 254 levels

    r = await send(client, "POST", "/Patient", body)

    assert 400 <= r.status_code < 500
    assert_outcome(r, r.status_code)
    assert await writes_so_far(client) == 0


async def test_json_nested_beyond_the_parser_limit_is_400(client):
    r = await send(client, "POST", "/Patient", b'{"resourceType":"Patient","x":' + b"[" * 5000 + b"]" * 5000 + b"}")

    assert 400 <= r.status_code < 500
    assert_outcome(r, r.status_code)


async def test_unknown_route_is_404_with_an_outcome(client):
    for url in ("/Patient/1/_history/1/more", "/Patient/1/nonsense/x/y"):
        r = await client.get(url)
        assert_outcome(r, 404, "not-found")


async def test_wrong_method_is_405_with_an_outcome(client, existing):
    for method, url in (("POST", f"/Patient/{existing['id']}"), ("DELETE", "/metadata"), ("PUT", "/_history")):
        r = await client.request(method, url)
        assert_outcome(r, 405, "not-supported")
    assert await writes_so_far(client) == 1


async def test_resource_id_that_is_not_a_string_is_400(client):
    r = await send(client, "PUT", "/Patient/p-1", orjson.dumps({**patient(), "id": 12}))

    assert_outcome(r, 400, "invalid", "Patient.id")
    assert await writes_so_far(client) == 0


async def test_non_utf8_body_is_400(client):
    r = await send(client, "POST", "/Patient", b'{"resourceType":"Patient","gender":"\xff"}')

    assert_outcome(r, 400, "structure")


def deep_object(depth: int) -> str:
    text = '"leaf"'
    for _ in range(depth):
        text = '{"a":' + text + "}"
    return text


async def test_deeply_nested_json_patch_is_refused(client, existing):
    value = '[{"url":"http://x","valueString":"y","a":' + deep_object(900) + "}]"
    ops = '[{"op":"add","path":"/extension","value":' + value + "}]"

    r = await send(client, "PATCH", f"/Patient/{existing['id']}", ops.encode(),
                   {"Content-Type": "application/json-patch+json"})

    assert_outcome(r, 400, "too-costly")
    assert await writes_so_far(client) == 1


async def test_deeply_nested_patch_entry_in_a_transaction_is_refused(client, existing):
    parameters = ('{"resourceType":"Parameters","parameter":[{"name":"operation","x":' + deep_object(900) + "}]}")
    bundle = ('{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"PATCH","url":"Patient/'
              + existing["id"] + '"},"resource":' + parameters + "}]}")

    r = await send(client, "POST", "/", bundle.encode())

    assert_outcome(r, 400, "too-costly", "Bundle.entry[0]")
    assert await writes_so_far(client) == 1


async def test_binary_patch_entry_that_is_not_base64_json_is_400(client, existing):
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [{
        "request": {"method": "PATCH", "url": f"Patient/{existing['id']}"},
        "resource": {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": "%%%"},
    }]}

    r = await send(client, "POST", "/", orjson.dumps(bundle))

    assert_outcome(r, 400, "invalid", "Bundle.entry[0].resource.data")
