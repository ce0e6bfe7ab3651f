"""The CA's files in data_dir/mitmproxy and the certificate's fingerprint, standard library only.

The status page and `stats` show the fingerprint and serve the certificate; they read these
without loading mitmproxy (and `cryptography` with it). `ca.py` creates the CA with mitmproxy.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from pathlib import Path

CONF_BASENAME = "mitmproxy"  # mitmproxy.options.CONF_BASENAME (a test checks they agree)
CERT_FILE = f"{CONF_BASENAME}-ca-cert.pem"
CER_FILE = f"{CONF_BASENAME}-ca-cert.cer"  # the same certificate in DER, for some phones
# Files that hold the CA's private key: readable by the owner only.
PRIVATE_FILES = (f"{CONF_BASENAME}-ca.pem", f"{CONF_BASENAME}-ca.p12")

_PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----\s*(.+?)\s*-----END CERTIFICATE-----", re.DOTALL
)


def as_phones_show_it(fingerprint: bytes) -> str:
    """ "AB:CD:...", the way phones list a certificate's SHA-256 fingerprint."""
    return fingerprint.hex(":").upper()


def ca_fingerprint(confdir: Path) -> str | None:
    """The SHA-256 fingerprint of the CA certificate in `confdir`; None if there is none yet.

    The fingerprint is the SHA-256 of the certificate's DER bytes, which the PEM file holds in
    base64 between its BEGIN and END lines.
    """
    path = confdir / CERT_FILE
    try:
        pem = path.read_bytes()
    except FileNotFoundError:
        return None
    match = _PEM_CERTIFICATE.search(pem)
    if match is None:
        return None
    try:
        der = base64.b64decode(b"".join(match.group(1).split()), validate=True)
    except binascii.Error:
        return None
    return as_phones_show_it(hashlib.sha256(der).digest())
