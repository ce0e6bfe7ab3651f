"""The proxy's certificate authority: created once in data_dir/mitmproxy, private key 0600.

mitmproxy's own `CertStore` creates and loads it, so `instaflyd ca` and the proxy always agree.
Phones install `mitmproxy-ca-cert.pem` (or fetch it from http://mitm.it through the proxy).
Its file names and fingerprint, without mitmproxy, are in `ca_files`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mitmproxy import certs
from mitmproxy.options import KEY_SIZE

from instaflyd.capture.ca_files import CERT_FILE, CONF_BASENAME, PRIVATE_FILES, as_phones_show_it


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
    if confdir.stat().st_mode & 0o077:  # only if needed: a read-only folder refuses any chmod
        os.chmod(confdir, 0o700)
    store = certs.CertStore.from_store(confdir, CONF_BASENAME, KEY_SIZE)
    for name in PRIVATE_FILES:
        path = confdir / name
        if path.exists() and path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
    return CaInfo(confdir / CERT_FILE, as_phones_show_it(store.default_ca.fingerprint()), created)
