"""The systemd side: the unit's exposure score, and transparent mode's firewall rules for real.

The transparent-mode test builds a tiny network out of namespaces (client -> box -> uplink, on
documentation addresses that exist only inside them: the `transparent_network` fixture), runs instafly-transparent.sh on the box
and checks that a client's TCP 443 lands on the box's proxy port with its original destination,
that UDP 443 (QUIC) is rejected, and that `stop` puts everything back.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from helpers import REPO, missing_on_this_machine
from support_transparent import SCRIPT, UPLINK_IP, box_script, sh

UNIT = REPO / "systemd" / "instaflyd.service"
PROXY_PORT = 18443


def exposure(unit: Path) -> float:
    if not shutil.which("systemd-analyze"):
        missing_on_this_machine("systemd-analyze is missing (apt install systemd)")
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(unit)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout[-500:]
    return float(match.group(1))


def test_the_daemon_unit_is_hardened_to_exposure_2_or_less() -> None:
    assert exposure(UNIT) <= 2.0
    text = UNIT.read_text()
    for line in (
        "Type=notify", "NotifyAccess=main", "WatchdogSec=60", "Restart=on-failure",
        "User=instafly", "StateDirectory=instafly", "ProtectSystem=strict", "KillMode=mixed",
    ):  # fmt: skip
        assert re.search(rf"^{re.escape(line)}$", text, re.M), line
    # TensorFlow's oneDNN needs writable+executable memory: it crashes under this setting.
    assert not re.search(r"^MemoryDenyWriteExecute=", text, re.M)
    # The daemon stops its children within 10 s; systemd must wait at least that long.
    stop = int(re.search(r"^TimeoutStopSec=(\d+)$", text, re.M).group(1))
    assert stop > 10


def test_the_transparent_unit_is_a_hardened_root_oneshot() -> None:
    unit = REPO / "systemd" / "instafly-transparent.service"
    text = unit.read_text()
    assert "Type=oneshot" in text and "RemainAfterExit=yes" in text
    assert "ExecStop=/opt/instafly/instafly-transparent.sh stop" in text
    assert "CapabilityBoundingSet=CAP_NET_ADMIN" in text
    assert exposure(unit) <= 3.0
    assert os.access(SCRIPT, os.X_OK)


SERVER = """
import socket, struct, sys
kind, port, label = sys.argv[1], int(sys.argv[2]), sys.argv[3]
udp = kind == "udp"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("203.0.113.7" if udp else "0.0.0.0", port))  # UDP replies must come from there
if not udp:
    s.listen()
print("ready", flush=True)
while True:
    if udp:
        data, peer = s.recvfrom(100)
        s.sendto(label.encode(), peer)
        continue
    conn, _ = s.accept()
    try:  # SO_ORIGINAL_DST, as mitmproxy's transparent mode reads it
        raw = conn.getsockopt(socket.SOL_IP, 80, 16)
        port_, ip = struct.unpack("!2xH4s8x", raw)
        original = f"{socket.inet_ntoa(ip)}:{port_}"
    except OSError:
        original = "-"
    conn.sendall(f"{label} {original}".encode())
    conn.close()
"""

CLIENT = """
import socket, sys
kind = sys.argv[1]
try:
    if kind == "tcp":
        with socket.create_connection(("203.0.113.7", 443), timeout=3) as s:
            print(s.recv(100).decode())
    else:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(3)
            s.connect(("203.0.113.7", 443))
            s.send(b"quic?")
            print(s.recv(100).decode())
except OSError as exc:
    print(type(exc).__name__)
"""


def in_ns(ns: str, code: str, *args: str) -> list[str]:
    return ["ip", "netns", "exec", ns, sys.executable, "-c", code, *args]


def start_server(ns: str, *args: str) -> subprocess.Popen[str]:
    server = subprocess.Popen(in_ns(ns, SERVER, *args), stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None and server.stdout.readline().strip() == "ready"
    return server


def client(network: dict[str, str], kind: str) -> str:
    return sh(*in_ns(network["client"], CLIENT, kind)).stdout.strip()


def sysctl(network: dict[str, str], key: str) -> str:
    return sh("ip", "netns", "exec", network["box"], "sysctl", "-n", key).stdout.strip()


def test_transparent_mode_redirects_tcp_rejects_quic_and_undoes_it(
    transparent_network: dict[str, str], tmp_path: Path
) -> None:
    network = transparent_network
    servers = [
        start_server(network["uplink"], "tcp", "443", "uplink"),
        start_server(network["uplink"], "udp", "443", "uplink-quic"),
        start_server(network["box"], "tcp", str(PROXY_PORT), "proxy"),
    ]
    try:
        sh("ip", "netns", "exec", network["box"], "sysctl", "-q", "-w", "net.ipv4.ip_forward=0")

        started = box_script(network, "start", tmp_path, PROXY_PORT)
        assert started.returncode == 0, started.stderr
        assert started.stdout.strip() == (
            f"instafly-transparent: TCP 80/443 on lan0 -> port {PROXY_PORT}, UDP 443 rejected"
        )
        assert sysctl(network, "net.ipv4.ip_forward") == "1"
        # HTTPS to the internet lands on the proxy, which can still read where it was going.
        assert client(network, "tcp") == f"proxy {UPLINK_IP}:443"
        # QUIC is refused at once, so the browser falls back to TCP.
        assert client(network, "udp") == "ConnectionRefusedError"
        assert box_script(network, "start", tmp_path, PROXY_PORT).returncode == 0  # idempotent
        rules = box_script(network, "status", tmp_path, PROXY_PORT).stdout
        assert rules.count(f"redirect to :{PROXY_PORT}") == 1

        stopped = box_script(network, "stop", tmp_path, PROXY_PORT)
        assert stopped.returncode == 0, stopped.stderr
        assert sysctl(network, "net.ipv4.ip_forward") == "0"  # as it was before start
        assert (
            box_script(network, "status", tmp_path, PROXY_PORT).returncode != 0
        )  # the table is gone
        sh("ip", "netns", "exec", network["box"], "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        time.sleep(0.1)
        assert client(network, "tcp") == "uplink -"  # straight through, nothing redirected
        assert client(network, "udp") == "uplink-quic"
    finally:
        for server in servers:
            server.kill()
            server.wait(5)


def test_transparent_script_refuses_bad_settings(
    transparent_network: dict[str, str], tmp_path: Path
) -> None:
    network = transparent_network
    env = {**os.environ, "RUNTIME_DIRECTORY": str(tmp_path)}
    for extra, message in (
        ({"INSTAFLY_LAN_INTERFACE": "nope0", "INSTAFLY_PROXY_PORT": "8080"},
         "the interface 'nope0' does not exist"),
        ({"INSTAFLY_LAN_INTERFACE": "lan0", "INSTAFLY_PROXY_PORT": "80a"},
         "the proxy port '80a' is not a number"),
        ({"INSTAFLY_LAN_INTERFACE": "lan0", "INSTAFLY_PROXY_PORT": "70000"},
         "the proxy port 70000 is out of range"),
    ):  # fmt: skip
        result = subprocess.run(
            ["ip", "netns", "exec", network["box"], str(SCRIPT), "start"],
            capture_output=True, text=True, env={**env, **extra}, timeout=30,
        )  # fmt: skip
        assert (result.returncode, result.stderr.strip()) == (1, f"instafly-transparent: {message}")
    usage = subprocess.run([str(SCRIPT)], capture_output=True, text=True)
    assert usage.returncode == 2 and "usage:" in usage.stderr


PROBE = """
import ctypes, errno, os, socket
libc = ctypes.CDLL(None, use_errno=True)
swap = libc.swapoff(b"/nonexistent")
print(os.path.exists("/proc/cpuinfo"), os.getpid(), sorted(os.listdir("/proc")))
print(swap, errno.errorcode[ctypes.get_errno()])
for family in (socket.AF_PACKET, socket.AF_INET):
    try:
        socket.socket(family, socket.SOCK_DGRAM).close()
        print("allowed")
    except OSError as exc:
        print(errno.errorcode[exc.errno])
for path in (os.environ["SYSTEM_FILE"], os.environ["HOME"] + "/state.txt"):
    try:
        open(path, "w").close()
        print("writable")
    except OSError as exc:
        print(errno.errorcode[exc.errno])
"""


def test_the_hardening_sandbox_applies_the_units_restrictions(tmp_path: Path) -> None:
    """What test_daemon_e2e runs the daemon under: the unit's /proc, seccomp and read-only rules."""
    system_file = Path("/var/instafly-hardening-probe.txt")  # root may write there, but not now
    try:
        result = subprocess.run(
            [sys.executable, str(REPO / "tests" / "support_hardening.py"), "--writable",
             str(tmp_path), "--", sys.executable, "-c", PROBE],
            capture_output=True, text=True, timeout=60,
            env={**os.environ, "SYSTEM_FILE": str(system_file)},
        )  # fmt: skip
        written = system_file.exists()
    finally:
        system_file.unlink(missing_ok=True)
    if result.returncode == 77:
        missing_on_this_machine(result.stderr.strip())
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "False 1 ['1', 'self', 'thread-self']",  # ProcSubset=pid, ProtectProc=invisible
        "-1 EPERM",  # SystemCallFilter=~@swap, SystemCallErrorNumber=EPERM
        "EPERM",  # RestrictAddressFamilies: no AF_PACKET
        "allowed",
        "EROFS",  # ProtectSystem=strict
        "writable",  # the state directory, which is also HOME
    ]
    assert not written
