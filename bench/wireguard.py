"""What does a phone pay for WireGuard? The same HTTPS requests from one phone, two ways:

  (a) wifi       phone -> the Wi-Fi proxy (HTTP CONNECT) -> instaflyd proxy -> origin
  (b) wireguard  phone -> its WireGuard tunnel (wireguard-go) -> instaflyd proxy -> origin

The phone is a network namespace with Debian's wireguard-go (tests/support_wireguard.py), the
origin tests/support_capture.py's stand-in for Instagram in a namespace of its own, and the
proxy `instaflyd proxy` with the Wi-Fi proxy and one WireGuard listener. The client runs inside
the phone's namespace: an Instagram JSON request (decrypted, parsed and stored, as a phone's
browser would make it), on a new connection each time and on one keep-alive connection; the two
ways take turns in rounds so that background noise hits both alike. Also the set-up page's live
check (plain HTTP, then HTTPS), as the phone's browser makes it. Reports p50/p95 in ms and the
ratio b/a. Needs root (namespaces) and wireguard-go.

    .venv/bin/python bench/wireguard.py [--requests 40] [--rounds 5]   # about 40 s
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

INSTAGRAM_ADDRESS = "157.240.1.174"  # any public address: the phone routes it into its tunnel
URL = "https://i.instagram.com/api/v1/users/1518284433/info/"
WAYS = ("wifi", "wireguard")


def client(args: argparse.Namespace) -> None:
    """Inside the phone's namespace: time the requests, print one JSON line."""
    import requests

    real = socket.getaddrinfo

    def resolve(host: str, *rest: object) -> object:  # the phone's DNS, for the stand-in
        return real(INSTAGRAM_ADDRESS if host == "i.instagram.com" else host, *rest)  # type: ignore[arg-type]

    socket.getaddrinfo = resolve  # type: ignore[assignment]
    proxies = {"https": args.proxy, "http": args.proxy} if args.proxy else {}

    def session() -> requests.Session:
        s = requests.Session()
        s.trust_env = False
        s.proxies = proxies
        s.verify = args.ca
        return s

    def timed(s: requests.Session, url: str, **kwargs: object) -> float:
        started = time.perf_counter()
        response = s.get(url, timeout=30, **kwargs)  # type: ignore[arg-type]
        assert response.content is not None
        assert response.status_code == 200, response.status_code
        return (time.perf_counter() - started) * 1000

    result: dict[str, list[float]] = {
        "new": [],
        "keepalive": [],
        "check_http": [],
        "check_https": [],
    }
    for _ in range(args.requests):
        with session() as s:
            result["new"].append(timed(s, URL))
    with session() as s:
        timed(s, URL)  # the connection is open from here on
        for _ in range(args.requests):
            result["keepalive"].append(timed(s, URL))
    for _ in range(max(1, args.requests // 4)):
        with session() as s:
            result["check_http"].append(timed(s, args.check.replace("https:", "http:")))
        with session() as s:
            result["check_https"].append(timed(s, args.check))
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    sub = parser.add_subparsers(dest="command")
    phone = sub.add_parser("client")
    phone.add_argument("--proxy")
    phone.add_argument("--ca", required=True)
    phone.add_argument("--check", required=True)
    phone.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()
    if args.command == "client":
        client(args)
        return
    bench(args)


def bench(args: argparse.Namespace) -> None:
    from helpers import free_port, write_config
    from mitmproxy.version import VERSION as MITMPROXY_VERSION
    from support_capture import running_proxy
    from support_wireguard import lab, origin_in

    from instaflyd.capture.wireguard import CHECK_HOST, CHECK_PATH, add_device, client_conf
    from instaflyd.config import load_config
    from instaflyd.store import Database

    samples: dict[str, dict[str, list[float]]] = {w: {} for w in WAYS}
    with tempfile.TemporaryDirectory(prefix="instafly-bench-wg-") as tmp_name, lab() as the_lab:
        tmp = Path(tmp_name)
        origin_ns, _, origin_address = the_lab.namespace("o")
        phone_ns, box, _ = the_lab.namespace("p")
        with origin_in(the_lab, origin_ns, origin_address, tmp / "origin") as origin:
            port, wg_port = free_port(), free_port()
            config_path = write_config(
                tmp / "instafly.yaml",
                {
                    "data_dir": str(tmp / "data"),
                    "log": {"level": "warning"},
                    "proxy": {
                        "listen_port": port,
                        "mitmproxy_options": origin["mitmproxy_options"],
                    },
                    "wireguard": {"port": wg_port},
                },
            )
            config = load_config(config_path, search=False)
            with Database(config.db_path) as db, db.transaction() as conn:
                device = add_device(conn, config, "bench")
            with running_proxy(config_path, port, tmp / "proxy.log"):
                ca = str(config.mitmproxy_dir / "mitmproxy-ca-cert.pem")
                started = time.perf_counter()
                the_lab.phone(phone_ns, client_conf(device, box, box), tmp, dns="10.0.0.53")
                up_ms = (time.perf_counter() - started) * 1000
                check = f"https://{CHECK_HOST}{CHECK_PATH}"
                for _ in range(args.rounds):
                    for way in WAYS:
                        command = [sys.executable, __file__, "client", "--ca", ca, "--check",
                                   check, "--requests", str(args.requests)]  # fmt: skip
                        if way == "wifi":
                            command += ["--proxy", f"http://{box}:{port}"]
                        result = the_lab.run(phone_ns, *command)
                        for name, values in json.loads(result.stdout).items():
                            samples[way].setdefault(name, []).extend(values)
    report(samples, args, up_ms, MITMPROXY_VERSION)


def report(
    samples: dict[str, dict[str, list[float]]], args: argparse.Namespace, up_ms: float, version: str
) -> None:
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f};"
          f" Python {platform.python_version()}, mitmproxy {version}")  # fmt: skip
    print(f"{args.rounds} rounds x {args.requests} requests per way; tunnel up in {up_ms:.0f} ms")
    print(f"{'request':<24}{'wifi p50':>10}{'p95':>8}{'wireguard p50':>15}{'p95':>8}{'b/a':>7}")
    for name, label in (
        ("new", "HTTPS, new connection"),
        ("keepalive", "HTTPS, keep-alive"),
        ("check_http", "live check, HTTP"),
        ("check_https", "live check, HTTPS"),
    ):
        a, b = samples["wifi"][name], samples["wireguard"][name]
        pa, pb = statistics.median(a), statistics.median(b)
        print(f"{label:<24}{pa:>10.1f}{p95(a):>8.1f}{pb:>15.1f}{p95(b):>8.1f}{pb / pa:>7.2f}")


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


if __name__ == "__main__":
    main()
