"""The proxy's certificate authority: created once in data_dir/mitmproxy, private key 0600.

mitmproxy's own `CertStore` creates and loads it, so `instaflyd ca` and the proxy always agree.
Phones install `mitmproxy-ca-cert.pem` (or fetch it from http://mitm.it through the proxy).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mitmproxy import certs
from mitmproxy.options import CONF_BASENAME, KEY_SIZE

CERT_FILE = f"{CONF_BASENAME}-ca-cert.pem"
CER_FILE = f"{CONF_BASENAME}-ca-cert.cer"  # the same certificate in DER, for some phones
# Files that hold the CA's private key: readable by the owner only.
PRIVATE_FILES = (f"{CONF_BASENAME}-ca.pem", f"{CONF_BASENAME}-ca.p12")


@dataclass(frozen=True)
class CaInfo:
    cert_path: Path
    sha256: str  # "AB:CD:..." as phones show it
    created: bool

    def as_dict(self) -> dict[str, object]:
        return {"path": str(self.cert_path), "sha256": self.sha256, "created": self.created}


def ensure_ca(confdir: Path) -> CaInfo:
    """Load the CA, creating it first if needed; make sure only the owner can read the key."""
    created = not (confdir / PRIVATE_FILES[0]).exists()
    confdir.mkdir(parents=True, exist_ok=True)
    os.chmod(confdir, 0o700)
    store = certs.CertStore.from_store(confdir, CONF_BASENAME, KEY_SIZE)
    for name in PRIVATE_FILES:
        path = confdir / name
        if path.exists() and path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
    return CaInfo(confdir / CERT_FILE, _as_phones_show_it(store.default_ca.fingerprint()), created)


def ca_fingerprint(confdir: Path) -> str | None:
    """The SHA-256 fingerprint of the CA certificate in `confdir`, if there is one yet."""
    path = confdir / CERT_FILE
    if not path.is_file():
        return None
    return _as_phones_show_it(certs.Cert.from_pem(path.read_bytes()).fingerprint())


def _as_phones_show_it(fingerprint: bytes) -> str:
    return fingerprint.hex(":").upper()
