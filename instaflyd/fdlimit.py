"""How many files a process may hold open, raised to what the system allows.

systemd's default soft limit is 1,024 whatever the hard one; `systemd/instaflyd.service` sets
LimitNOFILE for both, and `raise_fd_limit()` lifts the soft limit to the hard one for a process
started otherwise. The proxy and the page size their connection budgets from the result, so a
crowd of connections is refused by the budget before the process runs out of descriptors
(`Errno 24 Too many open files`, which fails every device's requests, not only the crowd's).
`fair_floor` is how both share out a full budget between a newcomer and those holding it.
"""

from __future__ import annotations

import resource

FD_RESERVE = 256  # for the database, logs, images, pipes and the listening sockets


def raise_fd_limit() -> int:
    """The soft RLIMIT_NOFILE after raising it to the hard limit (where allowed)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def connections_within(fds: int, per_connection: int, wanted: int) -> int:
    """At most `wanted` connections of `per_connection` descriptors each within `fds`, keeping
    FD_RESERVE for everything else (at least 16)."""
    return max(16, min(wanted, (fds - FD_RESERVE) // per_connection))


def fair_floor(held: int) -> int:
    """When every connection is taken, a newcomer holding `held` takes the longest-idle one of
    the addresses holding more than this: at least two more than it (so equals do not take
    turns for nothing), or any at all when it holds none (so a device always gets one)."""
    return held + 1 if held else 0
