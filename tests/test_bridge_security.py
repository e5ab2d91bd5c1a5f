"""Bind policy and CurveZMQ: loopback is open, anything else needs keys; only
authorised clients are served."""

import shutil

import pytest
import zmq.auth

from bridge import EngineClient, EngineUnavailable
from bridge_harness import EngineProcess, png_bytes
from bridge_harness import watchdog  # noqa: F401 (autouse: bounds every test)
from engine.cli import main
from engine.server.keys import BindRefused, is_loopback, keys_for_bind
from engine.server.server import EngineServer


@pytest.mark.parametrize("address, loopback", [
    ("tcp://127.0.0.1:5555", True), ("tcp://127.4.5.6:1", True), ("tcp://[::1]:5555", True),
    ("tcp://localhost:5555", True), ("ipc:///tmp/partsmith", True),
    ("tcp://0.0.0.0:5555", False), ("tcp://*:5555", False), ("tcp://192.168.1.20:5555", False),
    ("tcp://eth0:5555", False), ("tcp://example.com:5555", False), ("udp://127.0.0.1:1", False),
])
def test_loopback_detection(address, loopback):
    assert is_loopback(address) is loopback


def test_non_loopback_bind_is_refused_without_keys(tmp_path):
    with pytest.raises(BindRefused, match="python -m engine keys"):
        EngineServer("tcp://0.0.0.0:5555", tmp_path / "no-keys")  # refused before binding
    assert keys_for_bind("tcp://127.0.0.1:5555", None) is None


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keys")
    assert main(["keys", "--dir", str(folder / "engine"), "--client", "blender"]) == 0
    assert main(["keys", "--dir", str(folder / "engine"), "--client", "blender"]) == 2  # exists
    stranger = folder / "stranger"  # a valid keypair the engine never authorised
    stranger.mkdir()
    zmq.auth.create_certificates(stranger, "client")
    shutil.copy(folder / "engine" / "server.key", stranger / "server.key")
    return folder


def test_keys_layout(keys):
    engine = keys / "engine"
    assert {p.name for p in (engine / "clients" / "blender").iterdir()} == {
        "client.key", "client.key_secret", "server.key"}
    assert [p.name for p in (engine / "authorized").iterdir()] == ["blender.key"]
    assert (engine / "server.key_secret").stat().st_mode & 0o077 == 0
    assert keys_for_bind("tcp://0.0.0.0:5555", engine) == engine


def test_only_authorised_clients_are_served(tmp_path, keys):
    engine = EngineProcess(tmp_path, "--keys", str(keys / "engine"))
    try:
        with EngineClient(engine.address, keys=keys / "engine" / "clients" / "blender") as client:
            assert client.hello()["secure"] is True
            assert client.generate(png_bytes(), pipeline="test").parts
        for intruder in ({"keys": keys / "stranger"}, {}):
            with EngineClient(engine.address, timeout=1.5, **intruder) as client:
                with pytest.raises(EngineUnavailable) as error:
                    client.generate(png_bytes(), pipeline="test")
                assert error.value.code == "no_engine"
        with EngineClient(engine.address, keys=keys / "engine" / "clients" / "blender") as client:
            assert client.status()["jobs_finished"] == 1
    finally:
        engine.stop()
