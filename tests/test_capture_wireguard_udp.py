"""UDP from a WireGuard phone never reaches the box itself (issue 20), for real.

mitmproxy forwards a phone's UDP datagrams (other than DNS) to where they are addressed, on
mitmproxy 11 and 12 alike, so the box guard (`capture/box_guard.py`) must refuse them as it
refuses TCP. (mitmproxy 11 holds a datagram shorter than a DTLS record header, 13 bytes,
waiting for more before it decides what it is: the datagrams here are longer.)

A phone (Debian's wireguard-go in a namespace, the `wireguard_box` fixture) whose own loopback
is taken down and 127/8 routed into its tunnel, as a crafted client would, sends datagrams:

- to a UDP echo server on another host (a namespace beyond the box): answered;
- to a UDP echo server on the box itself, at 127.0.0.1, 127.0.0.9, another of the box's
  addresses (not the one the phone's WireGuard packets go to, which it reaches directly) and a
  link-local address of the box: never answered, the box's server receives
  nothing, and each is counted (`connections_to_the_box`) and logged with the phone's tunnel
  address;
- to the same box addresses on a port the administrator allowed (`proxy.box_ports_allowed`):
  answered, so the datagrams did reach the proxy and the refusals are the guard's.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import free_port, wait_until
from support_capture import counters
from support_wireguard import Lab, WireGuardBox, sh

from instaflyd.capture.wireguard import client_conf

pytestmark = pytest.mark.slow

SEND = textwrap.dedent(
    """
    import socket, sys
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(float(sys.argv[4]))
    sock.sendto(sys.argv[3].encode(), (sys.argv[1], int(sys.argv[2])))
    try:
        print(sock.recvfrom(65535)[0].decode(errors="replace"))
    except OSError as exc:
        print("no answer:", type(exc).__name__)
    """
)  # run inside the phone's namespace: one datagram from a new port, and the answer or none

ECHO = textwrap.dedent(
    """
    import socket, sys
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((sys.argv[1], int(sys.argv[2])))
    print("listening", flush=True)
    while True:
        data, peer = sock.recvfrom(65535)
        sock.sendto(b"echo: " + data, peer)
    """
)  # run inside the other host's namespace


@contextlib.contextmanager
def udp_echo_on_the_box(port: int) -> Iterator[list[bytes]]:
    """A UDP echo server on the box (all its addresses); yields the datagrams it received."""
    received: list[bytes] = []
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", port))
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(65535)
            except TimeoutError:
                continue
            received.append(data)
            sock.sendto(b"echo: " + data, peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield received
    finally:
        stop.set()
        thread.join(5)
        sock.close()


def send(the_lab: Lab, phone: str, address: str, port: int, text: str) -> str:
    """One datagram from the phone; the answer, or "no answer: ..." after 3 s."""
    result = the_lab.run(phone, sys.executable, "-c", SEND, address, str(port), text, "3",
                         check=False)  # fmt: skip
    return result.stdout.strip() or result.stderr.strip()


def test_a_phones_udp_through_wireguard_never_reaches_the_box_itself(
    wireguard_box: WireGuardBox, tmp_path: Path
) -> None:
    box = wireguard_box
    the_lab = box.lab
    phone, box_address, _ = the_lab.namespace("u")
    # another host, beyond the box; the box's side of the link to it is another box address
    host_ns, other_address, host_address = the_lab.namespace("e")
    link_local = f"169.254.{secrets.randbelow(200) + 20}.1"
    sh("ip", "addr", "add", f"{link_local}/32", "dev", the_lab.links[-1])
    wg = the_lab.phone(phone, client_conf(box.first_phone, box_address, box_address), tmp_path)
    the_lab.run(phone, "ip", "addr", "flush", "dev", "lo")  # a crafted client: 127/8 into
    the_lab.run(phone, "sysctl", "-q", "-w", f"net.ipv4.conf.{wg}.route_localnet=1")  # the
    the_lab.run(phone, "ip", "route", "add", "127.0.0.0/8", "dev", wg)  # tunnel
    host_port, hidden = free_port(), free_port()
    echo_log = tmp_path / "echo.log"
    with echo_log.open("wb") as log:
        the_lab.popen(host_ns, sys.executable, "-u", "-c", ECHO, host_address, str(host_port),
                      stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    wait_until(lambda: "listening" in echo_log.read_text(), 20, "the other host's echo server")
    db = box.db
    before = counters(db).get("connections_to_the_box", 0)
    box_addresses = ("127.0.0.1", "127.0.0.9", other_address, link_local)
    with udp_echo_on_the_box(hidden) as hidden_got, udp_echo_on_the_box(box.allowed_port) as ok:
        text = "a datagram from the phone, {} bytes long or more".format
        assert send(the_lab, phone, host_address, host_port, text(13)) == f"echo: {text(13)}"
        # The box's addresses are reached through the tunnel on the port the administrator
        # allowed: the datagrams reach the proxy, and it forwards UDP. (Not 127.0.0.9: a
        # server bound to 0.0.0.0 answers that from 127.0.0.1, which the proxy drops.)
        reachable = [a for a in box_addresses if a != "127.0.0.9"]
        for address in reachable:
            assert send(the_lab, phone, address, box.allowed_port, text(address)) == (
                f"echo: {text(address)}"
            )
        assert len(ok) == len(reachable)
        # Any other port of the box: refused, the datagram never arrives.
        answers = [send(the_lab, phone, a, hidden, text(a)) for a in box_addresses]
        wait_until(
            lambda: counters(db).get("connections_to_the_box", 0) - before == len(box_addresses),
            20,
            "the refusals to be counted",
            output=lambda: str(counters(db)) + box.log.read_text()[-3000:],
        )
    assert answers == ["no answer: TimeoutError"] * len(box_addresses)
    assert hidden_got == []
    log = box.log.read_text()
    tunnel_address = box.first_phone.address.split("/")[0]
    for address in box_addresses:
        assert (
            f"refused a connection from {tunnel_address} to {address} port {hidden}: that is"
            f" this box ({address})"
        ) in log, log[-3000:]
