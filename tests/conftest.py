"""Shared fixtures: stores on both adapters, an app per test, an HTTP client over ASGI.

MongoDB: a real server when ``MONGODB_URI`` is set; otherwise the SecantusDB server that
``.ci/run`` started (``SECANTUS_URI``), or one this session starts itself if ``secantusd-py`` is
installed. Every test gets its own database, so tests never see each other's data.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid

import httpx
import pytest

from tests.tokens import auth
from fhir_server.app import create_app
from fhir_server.settings import Settings
from tests.fhir_server.server_process import free_port

STORES = ["sqlite", "mongo"]


@pytest.fixture(scope="session")
def mongo_uri():
    uri = os.environ.get("MONGODB_URI") or os.environ.get("SECANTUS_URI")
    if uri:
        yield uri
        return
    exe = shutil.which("secantusd-py")
    if exe is None:
        pytest.skip("no MongoDB: set MONGODB_URI or install SecantusDB (pip install -e '.[test]')")
    port = free_port()
    tmp = tempfile.mkdtemp(prefix="secantus-")
    proc = subprocess.Popen([exe, "--host", "127.0.0.1", "--port", str(port), "--storage-path", tmp],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.2)
    yield f"mongodb://127.0.0.1:{port}/?directConnection=true"
    proc.terminate()
    proc.wait(10)
    shutil.rmtree(tmp, ignore_errors=True)


def mongo_store_uri(base: str) -> str:
    """A URI naming a fresh database on the server at ``base``."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(base)
    return urlunsplit((parts.scheme, parts.netloc, f"/t_{uuid.uuid4().hex[:12]}", parts.query, ""))


@pytest.fixture(params=STORES)
def settings(request, tmp_path) -> Settings:
    if request.param == "mongo":
        base = request.getfixturevalue("mongo_uri")
        return Settings(data=tmp_path, store=mongo_store_uri(base))
    return Settings(data=tmp_path)


@pytest.fixture
async def app(settings):
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app):
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver/fhir", headers=auth(app)) as c:
        yield c
