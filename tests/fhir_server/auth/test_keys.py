"""The local authority's signing keys: created once, rotated with the previous key kept."""

from __future__ import annotations

from fhir_server.auth.keys import KeyRing


def test_a_second_start_reuses_the_key(tmp_path):
    assert KeyRing(tmp_path).active.get("kid") == KeyRing(tmp_path).active.get("kid")


def test_rotation_keeps_exactly_the_previous_key(tmp_path):
    ring = KeyRing(tmp_path)
    first = ring.active.get("kid")
    second = ring.rotate()
    third = ring.rotate()
    assert len({first, second, third}) == 3
    assert ring.find(third) is not None and ring.find(second) is not None and ring.find(first) is None
    assert {k["kid"] for k in ring.jwks()["keys"]} == {second, third}
    assert all("d" not in k for k in ring.jwks()["keys"])  # public halves only


def test_a_running_process_signs_with_a_key_another_process_rotated_in(tmp_path):
    server, cli = KeyRing(tmp_path), KeyRing(tmp_path)
    new = cli.rotate()
    assert server.find(new) is not None  # an unknown kid makes it look again
    server._checked_at = 0.0  # as if the periodic look is due
    assert server.active.get("kid") == new


def test_keys_from_the_environment(tmp_path):
    import json

    source = KeyRing(tmp_path / "a")
    jwks = json.dumps({"keys": [json.loads(source.active.export_private())]})
    ring = KeyRing(tmp_path / "b", env_jwks=jwks)
    assert ring.active.get("kid") == source.active.get("kid")
    assert not (tmp_path / "b").exists()
