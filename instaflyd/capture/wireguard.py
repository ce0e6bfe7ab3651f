"""WireGuard phones: their keys, the proxy's listener for each, and the phone's configuration.

mitmproxy's WireGuard mode accepts one client key per listener, so every phone gets its own
listener (`wireguard:<file>@<port>`, a JSON file with `server_key` and `client_key`) on its own
UDP port, from `wireguard.port` up. A flow tells which phone it came from by its listener's file
(`device_of_listener`).

Standard library only: the page imports this module to add phones and draw their QR codes, and
the page never loads mitmproxy or cryptography, so the keys are X25519 done here (RFC 7748).

The phone's configuration sends all its traffic through the box (`AllowedIPs`): Instagram's
addresses cannot be listed reliably (they are Facebook's, shared and changing), so everything
goes into the tunnel and the proxy decrypts only Instagram's hosts; every other connection
passes through undecrypted. Only the box's own address is left out, so the phone reaches the
set-up page directly. `::/0` is routed too, with no IPv6 address in the tunnel: on a network
with IPv6, Instagram cannot go around the box over IPv6 (the phone falls back to IPv4 at once).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from instaflyd.config import Config
from instaflyd.fsutil import atomic_write_bytes
from instaflyd.store.devices import (
    WIREGUARD_PREFIX,
    WireGuardDevice,
    add_wireguard_device,
    wireguard_devices,
)

# mitmproxy's DNS server inside the tunnel (it resolves with the box's own resolver).
TUNNEL_DNS = "10.0.0.53"
TUNNEL_NETWORK = "10.0.0."  # device n has 10.0.0.(n + 2); .1 is what mitmproxy itself suggests
# The live check: a name under instagram.com (so the proxy decrypts it) that the capture addon
# answers itself and never forwards, and never a real Instagram host.
CHECK_HOST = "instafly-check.instagram.com"
CHECK_PATH = "/instafly-check"
# What the proxy's DNS answers for CHECK_HOST inside the tunnel: a documentation address
# (RFC 5737) that is never routed anywhere; the proxy answers without connecting to it.
CHECK_ADDRESS = "203.0.113.53"
LISTENER_PREFIX = "device-"
DIR_MODE = 0o700
FILE_MODE = 0o600

_P = 2**255 - 19
_A24 = 121665


class NotAWireGuardKey(ValueError):
    """Not a WireGuard key (44 characters of base64 for 32 bytes)."""


def _decode_scalar(key: bytes) -> int:
    scalar = bytearray(key)
    scalar[0] &= 248
    scalar[31] &= 127
    scalar[31] |= 64
    return int.from_bytes(scalar, "little")


def x25519(scalar: bytes, u_bytes: bytes) -> bytes:
    """RFC 7748's X25519 function (a Montgomery ladder; constant time is not needed here: keys
    are made on the box, never compared with an attacker's guesses)."""
    k = _decode_scalar(scalar)
    u = int.from_bytes(u_bytes, "little") & ((1 << 255) - 1)
    x1, x2, z2, x3, z3, swap = u, 1, 0, u, 1, 0
    for t in reversed(range(255)):
        bit = (k >> t) & 1
        swap ^= bit
        if swap:
            x2, x3, z2, z3 = x3, x2, z3, z2
        swap = bit
        a, b = (x2 + z2) % _P, (x2 - z2) % _P
        aa, bb = a * a % _P, b * b % _P
        e = (aa - bb) % _P
        c, d = (x3 + z3) % _P, (x3 - z3) % _P
        da, cb = d * a % _P, c * b % _P
        x3, z3 = (da + cb) ** 2 % _P, x1 * (da - cb) ** 2 % _P
        x2, z2 = aa * bb % _P, e * (aa + _A24 * e) % _P
    if swap:
        x2, z2 = x3, z3
    return (x2 * pow(z2, _P - 2, _P) % _P).to_bytes(32, "little")


def generate_private_key() -> str:
    """A new private key, clamped as `wg genkey` does, in WireGuard's base64."""
    key = bytearray(os.urandom(32))
    key[0] &= 248
    key[31] = (key[31] & 127) | 64
    return base64.b64encode(bytes(key)).decode()


def public_key(private_key: str) -> str:
    """`wg pubkey`."""
    return base64.b64encode(x25519(_key_bytes(private_key), (9).to_bytes(32, "little"))).decode()


def _key_bytes(key: str) -> bytes:
    try:
        raw = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise NotAWireGuardKey("not a WireGuard key")
    return raw


# --- devices -------------------------------------------------------------------------------


def device_ports(config: Config) -> range:
    """The UDP ports phones may get: one each, from wireguard.port up."""
    first = config.wireguard.port
    return range(first, min(first + config.wireguard.max_devices, 65536))


def tunnel_address(config: Config, port: int) -> str:
    return f"{TUNNEL_NETWORK}{2 + port - config.wireguard.port}/32"


def add_device(conn: sqlite3.Connection, config: Config, name: str) -> WireGuardDevice:
    """A new phone with keys of its own (inside the caller's write transaction); raises
    store.devices.DeviceBudgetFull when wireguard.max_devices exist."""
    ports = device_ports(config)
    return add_wireguard_device(
        conn,
        name,
        generate_private_key(),
        generate_private_key(),
        ports,
        {port: tunnel_address(config, port) for port in ports},
        config.wireguard.max_devices,
    )


def listener_dir(config: Config) -> Path:
    return config.data_dir / "wireguard"


def listener_file(config: Config, device: WireGuardDevice) -> Path:
    return listener_dir(config) / f"{LISTENER_PREFIX}{device.id}.json"


def device_of_listener(data: str | None) -> str | None:
    """The device key (wg:<id>) of a listener, from its file name; None for anything else."""
    stem = Path(data or "").stem
    number = stem[len(LISTENER_PREFIX) :] if stem.startswith(LISTENER_PREFIX) else ""
    return f"{WIREGUARD_PREFIX}{int(number)}" if number.isdigit() else None


def listener_modes(config: Config, devices: Sequence[WireGuardDevice]) -> list[str]:
    """Write each device's listener file (0600; the folder 0700), remove the files of devices
    that are gone, and return mitmproxy's mode specs for them."""
    folder = listener_dir(config)
    folder.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    os.chmod(folder, DIR_MODE)
    wanted = {listener_file(config, device): device for device in devices}
    for path in folder.glob(f"{LISTENER_PREFIX}*.json"):
        if path not in wanted:
            path.unlink(missing_ok=True)
    modes = []
    for path, device in wanted.items():
        content = json.dumps(
            {"server_key": device.server_private_key, "client_key": device.device_private_key}
        ).encode()
        if not path.is_file() or path.read_bytes() != content:
            atomic_write_bytes(path, content, mode=FILE_MODE)
        modes.append(f"wireguard:{path}@{device.port}")
    return modes


def active_devices(conn: sqlite3.Connection, config: Config) -> list[WireGuardDevice]:
    """The devices that get a listener (none when wireguard.enabled is off)."""
    return wireguard_devices(conn) if config.wireguard.enabled else []


# --- the phone's configuration -----------------------------------------------------------------


def allowed_ips(box_address: str) -> list[str]:
    """Everything, except the box's own address (the phone reaches the page directly)."""
    everything = ipaddress.IPv4Network("0.0.0.0/0")
    try:
        box = ipaddress.IPv4Network(f"{box_address}/32")
    except ValueError:
        return [str(everything), "::/0"]
    rest = sorted(everything.address_exclude(box))
    return [str(network) for network in ipaddress.collapse_addresses(rest)] + ["::/0"]


def client_conf(device: WireGuardDevice, endpoint_host: str, box_address: str) -> str:
    """The phone's WireGuard configuration (what its QR code holds): a secret of the household."""
    return "\n".join(
        [
            "[Interface]",
            f"PrivateKey = {device.device_private_key}",
            f"Address = {device.address}",
            f"DNS = {TUNNEL_DNS}",
            "",
            "[Peer]",
            f"PublicKey = {public_key(device.server_private_key)}",
            f"AllowedIPs = {', '.join(allowed_ips(box_address))}",
            f"Endpoint = {_host_for_endpoint(endpoint_host)}:{device.port}",
            "",
        ]
    )


def _host_for_endpoint(host: str) -> str:
    return f"[{host}]" if ":" in host else host
