"""Transparent-mode test support: a tiny network of namespaces where the box is the client's
gateway, and instafly-transparent.sh run on the box.

client (198.51.100.2) -> box (lan0 198.51.100.1 | wan0 192.0.2.1) -> uplink (192.0.2.2, and
203.0.113.7, "the internet", on its loopback), on documentation addresses that exist only
inside the namespaces, which are the test's own (random names) and deleted at the end.
tests/conftest.py serves it as the `transparent_network` fixture.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

from helpers import REPO, missing_on_this_machine

SCRIPT = REPO / "systemd" / "instafly-transparent.sh"
UPLINK_IP = "203.0.113.7"  # the "internet" host, inside the uplink namespace only


def netns_available() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces and nftables)"
    for tool in ("ip", "nft", "sysctl"):
        if not shutil.which(tool):
            return f"{tool} is missing (apt install iproute2 nftables procps)"
    return None


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=check, timeout=30)


@contextlib.contextmanager
def transparent_network() -> Iterator[dict[str, str]]:
    """The namespaces' names by role: client, box, uplink."""
    reason = netns_available()
    if reason:
        missing_on_this_machine(reason)
    tag = uuid.uuid4().hex[:6]
    names = {role: f"ifly-{role}-{tag}" for role in ("client", "box", "uplink")}
    try:
        for name in names.values():
            sh("ip", "netns", "add", name)
            sh("ip", "-n", name, "link", "set", "lo", "up")
        client, box, uplink = names["client"], names["box"], names["uplink"]
        for box_side, other in (("lan0", client), ("wan0", uplink)):  # box <-> client, uplink
            veth = ["type", "veth", "peer", "eth0", "netns", other]
            sh("ip", "link", "add", box_side, "netns", box, *veth)
        for ns, dev, address in (
            (client, "eth0", "198.51.100.2/24"), (box, "lan0", "198.51.100.1/24"),
            (box, "wan0", "192.0.2.1/24"), (uplink, "eth0", "192.0.2.2/24"),
        ):  # fmt: skip
            sh("ip", "-n", ns, "addr", "add", address, "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", uplink, "addr", "add", f"{UPLINK_IP}/32", "dev", "lo")
        sh("ip", "-n", client, "route", "add", "default", "via", "198.51.100.1")
        sh("ip", "-n", box, "route", "add", f"{UPLINK_IP}/32", "via", "192.0.2.2")
        sh("ip", "-n", uplink, "route", "add", "default", "via", "192.0.2.1")
        yield names
    finally:
        for name in names.values():
            sh("ip", "netns", "delete", name, check=False)


def box_script(
    network: dict[str, str], action: str, state: Path, proxy_port: int
) -> subprocess.CompletedProcess[str]:
    """instafly-transparent.sh `action` on the box, for LAN interface lan0 and `proxy_port`."""
    env = {
        **os.environ, "RUNTIME_DIRECTORY": str(state), "INSTAFLY_LAN_INTERFACE": "lan0",
        "INSTAFLY_PROXY_PORT": str(proxy_port),
    }  # fmt: skip
    return subprocess.run(
        ["ip", "netns", "exec", network["box"], str(SCRIPT), action],
        capture_output=True, text=True, env=env, timeout=30,
    )  # fmt: skip
