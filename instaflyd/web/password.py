"""The status page's password: generated on the first start, kept only as a salted scrypt hash.

Like an appliance's admin password: the first start makes a random one, prints it once, and keeps
only `scrypt(password, salt)` in `data_dir/web-password` (0600). `instaflyd password` replaces it.
A `web.password` written in the config takes precedence, for scripted set-ups.

`PagePassword` is what the web app asks: does this password match, and which password is current
(an opaque tag that changes whenever the password does, so sessions made under an old password
stop working).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

from instaflyd.fsutil import atomic_write_text

log = logging.getLogger("instafly.web")

PASSWORD_FILE = "web-password"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1  # 16 MB and ~50 ms per check on a small box
SALT_BYTES = 16
MAX_PASSWORD_CHARS = 1024
GENERATED_GROUPS = 4  # four groups of five: ~100 bits, readable aloud, typed on a phone
ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"  # no l, o, 0, 1: nothing to misread


class PasswordError(ValueError):
    """A password that cannot be used, or a password file that cannot be read."""


@dataclass(frozen=True)
class PasswordHash:
    """`scrypt$N$r$p$salt$digest` (base64), the only form a generated or set password is kept in."""

    salt: bytes
    digest: bytes
    n: int = SCRYPT_N
    r: int = SCRYPT_R
    p: int = SCRYPT_P

    @classmethod
    def of(cls, password: str) -> PasswordHash:
        salt = secrets.token_bytes(SALT_BYTES)
        return cls(salt, _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P))

    def matches(self, given: str) -> bool:
        if len(given) > MAX_PASSWORD_CHARS:
            return False
        return hmac.compare_digest(_scrypt(given, self.salt, self.n, self.r, self.p), self.digest)

    def encode(self) -> str:
        salt, digest = (base64.b64encode(part).decode() for part in (self.salt, self.digest))
        return f"scrypt${self.n}${self.r}${self.p}${salt}${digest}"

    @classmethod
    def decode(cls, text: str) -> PasswordHash:
        try:
            kind, n, r, p, salt, digest = text.strip().split("$")
            if kind != "scrypt":
                raise ValueError(kind)
            return cls(base64.b64decode(salt), base64.b64decode(digest), int(n), int(r), int(p))
        except ValueError as exc:
            raise PasswordError("the password file is damaged; set a new password") from exc


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=64 * 2**20)


def generate_password() -> str:
    groups = ("".join(secrets.choice(ALPHABET) for _ in range(5)) for _ in range(GENERATED_GROUPS))
    return "-".join(groups)


def check_new_password(password: str) -> str:
    """The password to set, or PasswordError saying what is wrong with it."""
    password = password.rstrip("\r\n")
    if len(password) < 8:
        raise PasswordError("the password must have at least 8 characters")
    if len(password) > MAX_PASSWORD_CHARS:
        raise PasswordError(f"the password must have at most {MAX_PASSWORD_CHARS} characters")
    return password


def password_file(data_dir: Path) -> Path:
    return data_dir / PASSWORD_FILE


def read_password_hash(data_dir: Path) -> PasswordHash | None:
    try:
        return PasswordHash.decode(password_file(data_dir).read_text(encoding="ascii"))
    except FileNotFoundError:
        return None


def set_password(data_dir: Path, password: str) -> PasswordHash:
    """Keep the hash of `password` (0600); every session made under the old one ends."""
    hashed = PasswordHash.of(check_new_password(password))
    data_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
    atomic_write_text(password_file(data_dir), hashed.encode() + "\n", mode=0o600)
    return hashed


def ensure_password(data_dir: Path) -> str | None:
    """Make a random password if none is kept yet; returns it then (to show once), else None."""
    if password_file(data_dir).exists():
        return None
    password = generate_password()
    set_password(data_dir, password)
    return password


def config_file_is_readable_by_others(path: Path | None) -> bool:
    if path is None:
        return False
    try:
        return bool(path.stat().st_mode & stat.S_IROTH)
    except OSError:
        return False


class PagePassword:
    """The password the page checks: `web.password` from the config, or the kept hash.

    The kept file is read again when it changes, so `instaflyd password` takes effect at once in a
    running daemon. A successful check is remembered (as a keyed hash of what was given) so that
    scripts sending HTTP basic auth on every request do not pay for scrypt each time.
    """

    def __init__(self, data_dir: Path, configured: str | None) -> None:
        self.data_dir = data_dir
        self.configured = configured
        self._lock = threading.Lock()
        self._file_signature: tuple[int, int, int] | None = None
        self._hash: PasswordHash | None = None
        self._remember_key = secrets.token_bytes(32)
        self._remembered: bytes | None = None

    def current(self) -> tuple[str, PasswordHash | None]:
        """(tag of the current password, its hash if it is the kept one)."""
        if self.configured is not None:
            digest = hashlib.sha256(b"config:" + self.configured.encode()).hexdigest()
            return digest[:32], None
        path = password_file(self.data_dir)
        with self._lock:
            try:
                info = os.stat(path)
                signature = (info.st_ino, info.st_mtime_ns, info.st_size)
            except FileNotFoundError:
                signature = None
            if signature != self._file_signature:
                self._hash = read_password_hash(self.data_dir) if signature else None
                self._file_signature = signature
                self._remembered = None
            hashed = self._hash
        if hashed is None:
            return "none", None
        return hashlib.sha256(b"kept:" + hashed.digest).hexdigest()[:32], hashed

    def tag(self) -> str:
        return self.current()[0]

    def matches(self, given: str | None) -> bool:
        if given is None or len(given) > MAX_PASSWORD_CHARS:
            return False
        if self.configured is not None:
            return hmac.compare_digest(given.encode(), self.configured.encode())
        tag, hashed = self.current()
        if hashed is None:
            return False  # no password kept and none configured: nobody gets in
        token = hmac.new(self._remember_key, f"{tag}:{given}".encode(), "sha256").digest()
        if self._remembered is not None and hmac.compare_digest(token, self._remembered):
            return True
        if hashed.matches(given):
            self._remembered = token
            return True
        return False


def announce_password(data_dir: Path, configured: str | None, source: Path | None) -> None:
    """At start: make the first password and show it once, or warn about an exposed one."""
    if configured is not None:
        if config_file_is_readable_by_others(source):
            log.warning(
                "web.password is in %s, which other users of this box can read: "
                "chmod 600 it, or remove the key and use 'instaflyd password'",
                source,
            )
        return
    created = ensure_password(data_dir)
    if created is not None:
        log.warning(
            "the status page's password is %s (shown only this once; "
            "change it with 'instaflyd password')",
            created,
        )
