"""A region per scenario: a server process on each store, with a real SMTP server beside it."""

from __future__ import annotations

import pytest

from tests.conftest import mongo_store_uri
from tests.fhir_server.server_process import ServerProcess
from tests.fhir_server.subscriptions.smtp import SMTPSink
from tests.scenarios.region import Region

# Fast clocks for the scenarios: the deadline sweeper every 0.2 s, quick notification retries.
ENV = {"TELEMED_DEADLINE_SWEEP_SECONDS": "0.2", "TELEMED_NOTIFY_BACKOFF_MAX_SECONDS": "0.3",
       "TELEMED_LOG_LEVEL": "WARNING"}


@pytest.fixture(params=["sqlite", "mongodb"])
async def region(request, tmp_path):
    sink = SMTPSink(tmp_path / "maildir").start()
    env = {**ENV, "TELEMED_SMTP_HOST": "127.0.0.1", "TELEMED_SMTP_PORT": str(sink.port)}
    if request.param == "mongodb":
        env["TELEMED_STORE"] = mongo_store_uri(request.getfixturevalue("mongo_uri"))
    server = ServerProcess(tmp_path / "data", env=env).start()
    region = Region(server, sink)
    yield region
    await region.close()
    server.stop()
    sink.stop()
