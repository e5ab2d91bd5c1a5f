"""CurveZMQ keys and the bind policy: loopback is open, anything else needs keys.

Key folder layout (created by `python -m engine keys`):
    server.key, server.key_secret        the engine's keypair (the secret never leaves)
    authorized/<name>.key                public keys of the clients that may connect
    clients/<name>/                      client.key, client.key_secret and server.key:
                                         copy this folder to the client machine and pass
                                         it as EngineClient(address, keys=folder)
New authorisations take effect when the engine restarts.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

ZAP_DOMAIN = "partsmith"
CONFIG_HOME = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config"))
DEFAULT_KEYS_DIR = CONFIG_HOME / "partsmith" / "keys"


class BindRefused(Exception):
    """The engine would listen beyond this machine without encryption and authentication."""


def create_keys(directory: Path, client: str) -> Path:
    """Create the server keypair (once) and an authorised keypair for `client`;
    returns the folder to hand to that client."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    if not (directory / "server.key_secret").exists():
        zmq.auth.create_certificates(directory, "server")
    bundle = directory / "clients" / client
    if bundle.exists():
        raise FileExistsError(f"client {client!r} already has keys in {bundle}")
    bundle.mkdir(parents=True)
    zmq.auth.create_certificates(bundle, "client")
    shutil.copy(directory / "server.key", bundle / "server.key")
    (directory / "authorized").mkdir(exist_ok=True)
    shutil.copy(bundle / "client.key", directory / "authorized" / f"{client}.key")
    for secret in (directory / "server.key_secret", bundle / "client.key_secret"):
        secret.chmod(0o600)
    return bundle


def is_loopback(address: str) -> bool:
    """Whether a ZeroMQ endpoint is reachable only from this machine."""
    scheme, _, rest = address.partition("://")
    if scheme == "ipc":
        return True
    if scheme != "tcp":
        return False
    host = rest.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # "*", an interface name or a host name
        return False


def keys_for_bind(address: str, keys_dir: Path | None) -> Path | None:
    """The key folder to secure `address` with (None: plain loopback), or BindRefused."""
    if keys_dir is None and is_loopback(address):
        return None
    directory = keys_dir or DEFAULT_KEYS_DIR
    if not (directory / "server.key_secret").exists() or not any(
            (directory / "authorized").glob("*.key")):
        raise BindRefused(
            f"refusing to listen on {address}: it is reachable from other machines and no "
            f"CurveZMQ keys are configured in {directory}. Create them with "
            f"`python -m engine keys --dir {directory}`, or listen on tcp://127.0.0.1:PORT.")
    return directory


def secure(context: zmq.Context, socket: zmq.Socket, directory: Path) -> ThreadAuthenticator:
    """Make `socket` (before it binds) a CURVE server that admits only authorised keys."""
    authenticator = ThreadAuthenticator(context)
    authenticator.start()
    authenticator.configure_curve(domain=ZAP_DOMAIN, location=str(directory / "authorized"))
    public, secret = zmq.auth.load_certificate(directory / "server.key_secret")
    socket.curve_publickey = public
    socket.curve_secretkey = secret
    socket.curve_server = True
    socket.zap_domain = ZAP_DOMAIN.encode()
    return authenticator
