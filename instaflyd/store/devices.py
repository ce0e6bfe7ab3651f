"""Phones: the WireGuard devices the household added, and every device the proxy has seen.

A WireGuard device (`wireguard_devices`) has its own keys and its own UDP port: mitmproxy's
WireGuard mode takes one client key per listener. Revoking one blanks its keys at once, so a
removed phone's configuration can never be shown or served again.

A seen device (`seen_devices`) is keyed `wg:<id>` (traffic through that device's listener) or
`ip:<address>` (a Wi-Fi proxy client, by address). What a stranger on the LAN can make the box
hold is bounded: addresses by `max_by_address` (the least recently seen go first), posts by
device by age (`prune_device_posts`).

The keys never leave this module in a record's repr, so a record logged by mistake shows none.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field

from instaflyd.store.rows import record

WIREGUARD_PREFIX = "wg:"
ADDRESS_PREFIX = "ip:"
REVOKED_KEPT = 50  # revoked devices kept (keys blanked) so their history keeps a name
NAME_MAX = 60  # characters of a device's name


class DeviceBudgetFull(Exception):
    """As many WireGuard devices exist as the config allows."""


@dataclass(frozen=True)
class WireGuardDevice:
    id: int
    name: str
    port: int
    address: str  # in the tunnel, e.g. 10.0.0.2/32
    server_private_key: str = field(repr=False)
    device_private_key: str = field(repr=False)
    created: float
    revoked: float | None

    @property
    def key(self) -> str:
        return f"{WIREGUARD_PREFIX}{self.id}"


@dataclass(frozen=True)
class SeenDevice:
    key: str  # wg:<id> or ip:<address>
    name: str | None  # the household's name (a WireGuard device's own name)
    first_seen: float
    last_seen: float
    trusted_at: float | None  # when it first accepted the box's certificate
    tls_untrusted: int
    tls_pinned: int
    tls_last_host: str | None
    tls_last_error: str | None
    tls_last_at: float | None
    posts_since: int  # posts captured from it since the time asked for
    revoked: bool  # a WireGuard device that was removed

    @property
    def wireguard_id(self) -> int | None:
        if self.key.startswith(WIREGUARD_PREFIX):
            return int(self.key[len(WIREGUARD_PREFIX) :])
        return None

    @property
    def address(self) -> str | None:
        if self.key.startswith(ADDRESS_PREFIX):
            return self.key[len(ADDRESS_PREFIX) :]
        return None


_DEVICE_COLUMNS = (
    "id, name, port, address, server_private_key, device_private_key, created, revoked"
)


def _device(row: sqlite3.Row) -> WireGuardDevice:
    return record(WireGuardDevice, row)


def wireguard_devices(conn: sqlite3.Connection) -> list[WireGuardDevice]:
    """The devices not revoked, oldest first."""
    rows = conn.execute(
        f"SELECT {_DEVICE_COLUMNS} FROM wireguard_devices WHERE revoked IS NULL ORDER BY id"
    )
    return [_device(row) for row in rows]


def get_wireguard_device(conn: sqlite3.Connection, device_id: int) -> WireGuardDevice | None:
    row = conn.execute(
        f"SELECT {_DEVICE_COLUMNS} FROM wireguard_devices WHERE id = ?", (device_id,)
    ).fetchone()
    return _device(row) if row else None


def add_wireguard_device(
    conn: sqlite3.Connection,
    name: str,
    server_private_key: str,
    device_private_key: str,
    ports: range,
    address_of: dict[int, str],
    max_devices: int,
    now: float | None = None,
) -> WireGuardDevice:
    """A new device on the lowest free port of `ports` (call inside a write transaction, so two
    at once cannot take the same port); raises DeviceBudgetFull when `max_devices` exist."""
    now = time.time() if now is None else now
    used = {row[0] for row in conn.execute(
        "SELECT port FROM wireguard_devices WHERE revoked IS NULL"
    )}  # fmt: skip
    if len(used) >= max_devices:
        raise DeviceBudgetFull(f"{len(used)} phones are set up, the most this box allows")
    port = next((p for p in ports if p not in used), None)
    if port is None:
        raise DeviceBudgetFull("every WireGuard port is taken")
    cursor = conn.execute(
        "INSERT INTO wireguard_devices (name, port, address, server_private_key,"
        " device_private_key, created) VALUES (?, ?, ?, ?, ?, ?)",
        (name[:NAME_MAX], port, address_of[port], server_private_key, device_private_key, now),
    )
    conn.execute(
        "DELETE FROM wireguard_devices WHERE revoked IS NOT NULL AND id NOT IN"
        " (SELECT id FROM wireguard_devices WHERE revoked IS NOT NULL"
        "  ORDER BY revoked DESC LIMIT ?)",
        (REVOKED_KEPT,),
    )
    device = get_wireguard_device(conn, int(cursor.lastrowid or 0))
    assert device is not None
    return device


def revoke_wireguard_device(
    conn: sqlite3.Connection, device_id: int, now: float | None = None
) -> bool:
    """Revoke a device and forget its keys; False if there is no such device not yet revoked."""
    now = time.time() if now is None else now
    cursor = conn.execute(
        "UPDATE wireguard_devices SET revoked = ?, server_private_key = '',"
        " device_private_key = '' WHERE id = ? AND revoked IS NULL",
        (now, device_id),
    )
    return cursor.rowcount == 1


def rename_device(conn: sqlite3.Connection, key: str, name: str) -> bool:
    """The household's name for a device (a WireGuard device or an address the proxy saw)."""
    name = name.strip()[:NAME_MAX]
    if key.startswith(WIREGUARD_PREFIX):
        device_id = key[len(WIREGUARD_PREFIX) :]
        if not device_id.isdigit() or len(device_id) > 18:  # below 2**63: SQLite's integers
            return False
        cursor = conn.execute(
            "UPDATE wireguard_devices SET name = ? WHERE id = ? AND revoked IS NULL",
            (name, int(device_id)),
        )
    else:
        cursor = conn.execute("UPDATE seen_devices SET name = ? WHERE key = ?", (name or None, key))
    return cursor.rowcount == 1


def device_seen(
    conn: sqlite3.Connection,
    key: str,
    trusted: bool = False,
    now: float | None = None,
    max_by_address: int = 64,
) -> None:
    """`key` was seen (and accepted the box's certificate, when `trusted`)."""
    now = time.time() if now is None else now
    conn.execute(
        "INSERT INTO seen_devices (key, first_seen, last_seen, trusted_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT(key) DO UPDATE SET last_seen = MAX(last_seen, excluded.last_seen),"
        "   trusted_at = COALESCE(trusted_at, excluded.trusted_at)",
        (key, now, now, now if trusted else None),
    )
    if key.startswith(ADDRESS_PREFIX):
        _keep_addresses_within(conn, max_by_address)


def _keep_addresses_within(conn: sqlite3.Connection, budget: int) -> None:
    (held,) = conn.execute(
        "SELECT COUNT(*) FROM seen_devices WHERE key >= ? AND key < ?",
        (ADDRESS_PREFIX, ADDRESS_PREFIX[:-1] + ";"),
    ).fetchone()
    if held <= budget:
        return
    stale = [row[0] for row in conn.execute(
        "SELECT key FROM seen_devices WHERE key >= ? AND key < ?"
        " ORDER BY last_seen, key LIMIT ?",
        (ADDRESS_PREFIX, ADDRESS_PREFIX[:-1] + ";", held - budget),
    )]  # fmt: skip
    conn.executemany("DELETE FROM seen_devices WHERE key = ?", [(k,) for k in stale])
    conn.executemany("DELETE FROM device_posts WHERE device = ?", [(k,) for k in stale])


def device_trusted(conn: sqlite3.Connection, key: str) -> bool:
    row = conn.execute("SELECT trusted_at FROM seen_devices WHERE key = ?", (key,)).fetchone()
    return row is not None and row[0] is not None


def count_device_tls_failure(
    conn: sqlite3.Connection,
    key: str,
    host: str,
    error: str,
    pinned: bool,
    now: float | None = None,
    max_by_address: int = 64,
) -> None:
    """A failed handshake of `key`: `pinned` (it trusts the box, an app refused it) or not."""
    now = time.time() if now is None else now
    device_seen(conn, key, now=now, max_by_address=max_by_address)
    column = "tls_pinned" if pinned else "tls_untrusted"
    conn.execute(
        f"UPDATE seen_devices SET {column} = {column} + 1, tls_last_host = ?,"
        " tls_last_error = ?, tls_last_at = ? WHERE key = ?",
        (host[:253], error[:300], now, key),
    )


def record_device_posts(
    conn: sqlite3.Connection, key: str, post_ids: list[str], now: float | None = None
) -> None:
    """These posts were captured from `key` (the latest time counts)."""
    now = time.time() if now is None else now
    conn.executemany(
        "INSERT INTO device_posts (device, post_id, seen_at) VALUES (?, ?, ?)"
        " ON CONFLICT(device, post_id) DO UPDATE SET seen_at = excluded.seen_at",
        [(key, post_id, now) for post_id in post_ids],
    )


def prune_device_posts(conn: sqlite3.Connection, before: float) -> int:
    return conn.execute("DELETE FROM device_posts WHERE seen_at < ?", (before,)).rowcount


def seen_devices(conn: sqlite3.Connection, posts_since: float, limit: int) -> list[SeenDevice]:
    """The devices the proxy saw, most recently seen first, with their posts since then."""
    rows = conn.execute(
        "SELECT s.key, COALESCE(w.name, s.name) AS name, s.first_seen, s.last_seen, s.trusted_at,"
        " s.tls_untrusted, s.tls_pinned, s.tls_last_host, s.tls_last_error, s.tls_last_at,"
        " (SELECT COUNT(*) FROM device_posts AS d WHERE d.device = s.key AND d.seen_at >= ?)"
        "   AS posts_since,"
        " w.revoked IS NOT NULL AS revoked"
        " FROM seen_devices AS s LEFT JOIN wireguard_devices AS w ON s.key = 'wg:' || w.id"
        " ORDER BY s.last_seen DESC, s.key LIMIT ?",
        (posts_since, limit),
    )
    return [record(SeenDevice, row, revoked=bool(row["revoked"])) for row in rows]
