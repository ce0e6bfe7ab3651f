"""Log-in sessions the server can end: a random id per log-in, kept on the box.

The session cookie is signed, but a signed cookie alone cannot be taken back: a copy kept from
before a log-out would keep working for its whole lifetime. So each log-in gets a random id; the
box keeps the ids' hashes (with their expiry and the password they were made under) in
`data_dir/web-sessions` (0600), and a cookie counts only while its id is kept there *and* the
password is still the one it was made under. Logging out forgets the id; changing the password
ends every session at once. The file lets log-ins survive a restart.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from instaflyd.fsutil import atomic_write_text

SESSIONS_FILE = "web-sessions"
MAX_SESSIONS = 64  # the oldest log-in is forgotten beyond this (a household has a few devices)

log = logging.getLogger("instafly.web")


@dataclass(frozen=True)
class KeptSession:
    expires: float
    password_tag: str


class SessionRegistry:
    def __init__(self, data_dir: Path, lifetime_seconds: float) -> None:
        self.path = data_dir / SESSIONS_FILE
        self.lifetime = lifetime_seconds
        self._save_failed = False  # said once in the log until a save works again
        self._lock = threading.Lock()
        self._sessions = self._load()

    def open(self, password_tag: str) -> str:
        """A new session id for a log-in under the password with this tag."""
        session_id = secrets.token_urlsafe(24)
        with self._lock:
            self._sessions[_key(session_id)] = KeptSession(
                time.time() + self.lifetime, password_tag
            )
            self._forget_old()
            self._save()
        return session_id

    def is_open(self, session_id: object, password_tag: str) -> bool:
        if not isinstance(session_id, str):
            return False
        kept = self._sessions.get(_key(session_id))
        return kept is not None and kept.expires > time.time() and kept.password_tag == password_tag

    def close(self, session_id: object) -> None:
        if not isinstance(session_id, str):
            return
        with self._lock:
            if self._sessions.pop(_key(session_id), None) is not None:
                self._save()

    def __len__(self) -> int:
        return len(self._sessions)

    def _forget_old(self) -> None:
        now = time.time()
        live = {key: kept for key, kept in self._sessions.items() if kept.expires > now}
        newest = sorted(live.items(), key=lambda item: item[1].expires)[-MAX_SESSIONS:]
        self._sessions = dict(newest)

    def _load(self) -> dict[str, KeptSession]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            return {key: KeptSession(float(v["expires"]), str(v["password_tag"]))
                    for key, v in raw.items()}  # fmt: skip
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return {}  # none kept yet, or damaged: everyone logs in again

    def _save(self) -> None:
        document = {key: asdict(kept) for key, kept in self._sessions.items()}
        try:
            atomic_write_text(self.path, json.dumps(document), mode=0o600)
        except OSError as exc:  # a read-only or full data folder: kept in memory meanwhile
            if not self._save_failed:
                log.error("the page's logins cannot be saved (%s): they last until a restart", exc)
            self._save_failed = True
        else:
            self._save_failed = False


def _key(session_id: str) -> str:
    """The file keeps only a hash of each id: reading it does not give anyone a session."""
    return hashlib.sha256(session_id.encode()).hexdigest()
