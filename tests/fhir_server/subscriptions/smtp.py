"""A real SMTP server process for the tests: aiosmtpd storing every message in a Maildir."""

from __future__ import annotations

import mailbox
import socket
import subprocess
import sys
import time
from email.header import decode_header, make_header
from pathlib import Path

import pytest

from tests.fhir_server.server_process import free_port


class SMTPSink:
    def __init__(self, maildir: Path, port: int | None = None):
        self.maildir, self.port = maildir, port or free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> "SMTPSink":
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aiosmtpd", "-n", "-u", "-l", f"127.0.0.1:{self.port}",
             "-c", "aiosmtpd.handlers.Mailbox", str(self.maildir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("aiosmtpd did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def messages(self) -> list[dict]:
        """Every message received: to, subject (decoded) and the text body."""
        if not self.maildir.exists():
            return []
        out = []
        for m in mailbox.Maildir(self.maildir, create=False):
            body = m.get_payload(decode=True) if not m.is_multipart() else m.get_payload(0).get_payload(decode=True)
            out.append({"to": m["To"], "from": m["From"], "subject": str(make_header(decode_header(m["Subject"]))),
                        "text": body.decode(m.get_content_charset() or "utf-8")})
        return out


@pytest.fixture
def sink(tmp_path):
    """A running SMTP server process (import this fixture into a test module to use it)."""
    s = SMTPSink(tmp_path / "maildir").start()
    yield s
    s.stop()
