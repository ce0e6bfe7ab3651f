"""File descriptors: a crowd of idle tunnels cannot make the proxy run out of them (issue 20,
item 6), for real.

The proxy runs with a soft and hard limit of 512 open files (as a box without the unit's
LimitNOFILE would have 1,024), six LAN addresses each open 100 idle CONNECT tunnels to a
service, and the household's phone (127.0.0.2) browses meanwhile. The proxy keeps its
connections within what its descriptors allow, stops the crowd at three quarters of that
(each newcomer past it closing an idle connection of the address holding the most), and the
phone is served throughout; no "Too many open files" anywhere. Before, six addresses x
200 tunnels ran the proxy out of descriptors and every device's requests failed.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest
from helpers import free_port, wait_until
from support_capture import (
    box_service,
    close_all,
    household_requests,
    open_tunnels,
    proxy_config,
    running_proxy,
    still_open,
)

from instaflyd.capture.limits import SMALL_CLIENT
from instaflyd.fdlimit import FD_RESERVE

FILES = 512
HOUSEHOLD = "127.0.0.2"


@pytest.mark.slow
def test_a_crowd_of_tunnels_cannot_run_the_proxy_out_of_files(tmp_path: Path) -> None:
    port = free_port()
    log_path = tmp_path / "proxy.log"
    with box_service() as (target, _):
        config = proxy_config(tmp_path, port, box_ports_allowed=[target])
        held: list[socket.socket] = []
        total = (FILES - FD_RESERVE) // 2
        with running_proxy(config, port, log_path, max_files=FILES) as process:
            try:
                for i in range(6):
                    held += open_tunnels(port, f"127.0.0.{10 + i}", f"127.0.0.1:{target}", 100)
                codes = household_requests(port, target, HOUSEHOLD, path="ok")
                limits = Path(f"/proc/{process.pid}/limits").read_text()
                assert codes == [200] * 10, (codes, limits, log_path.read_text()[-3000:])
                # Past three quarters each newcomer's connection closed one of the first
                # address's (the phone's too: one or two for its ten requests, as the proxy
                # keeps it alive): the crowd is kept at three quarters, less the phone's.
                crowd_open = lambda: sum(still_open(sock) for sock in held)  # noqa: E731
                quarters = total * 3 // 4
                wait_until(lambda: quarters - 10 <= crowd_open() < quarters, 10, "evictions",
                           output=lambda: f"{crowd_open()} open of {len(held)}")  # fmt: skip
            finally:
                close_all(held)
    # The first address stops at three quarters, the other five at SMALL_CLIENT each.
    assert len(held) == total * 3 // 4 + 5 * SMALL_CLIENT, len(held)
    text = log_path.read_text()
    assert "Too many open files" not in text
    assert re.search(rf"at most {total} connections", text), text[-2000:]
    assert f"the rest are kept for devices with fewer than {SMALL_CLIENT}" in text
    print(f"{len(held)} tunnels held of {total}; the phone was served 10 of 10")
