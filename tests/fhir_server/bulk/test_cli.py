"""``telemed export``: the same engine from the command line, into a folder."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from typer.testing import CliRunner

from fhir_server.cli import app as cli
from tests.fhir_server.bulk.conftest import by_id, observation, patient, put_all, search_all

pytestmark = pytest.mark.req("NAT-1")


async def test_cli_export_writes_ndjson_equal_to_a_search_and_a_manifest(client, settings, tmp_path):
    await put_all(client, *[patient(f"p{i}") for i in range(5)], *[observation(f"o{i}", "p1") for i in range(30)])
    out = tmp_path / "export"
    args = ["export", "--type", "Patient,Observation", "--out", str(out), "--since", "2000-01-01T00:00:00Z"]
    args += ["--store", settings.store] if settings.store else ["--data", str(settings.data)]
    result = await asyncio.to_thread(CliRunner().invoke, cli, args)  # asyncio.run inside: another thread
    assert result.exit_code == 0, result.output
    manifest = orjson.loads((out / "manifest.json").read_bytes())
    got: dict[str, list] = {}
    for item in manifest["output"]:
        lines = (out / item["url"]).read_bytes().splitlines()
        assert len(lines) == item["count"]
        got.setdefault(item["type"], []).extend(orjson.loads(line) for line in lines)
    assert by_id(got["Patient"]) == by_id(await search_all(client, "Patient"))
    assert by_id(got["Observation"]) == by_id(await search_all(client, "Observation"))


def test_cli_export_refuses_an_unknown_type_filter_parameter(tmp_path):
    result = CliRunner().invoke(cli, ["export", "--type", "Observation", "--out", str(tmp_path / "o"), "--data",
                                      str(tmp_path), "--type-filter", "Observation?nonsense=1"])
    assert result.exit_code == 2
