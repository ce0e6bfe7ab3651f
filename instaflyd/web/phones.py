"""Phones on the set-up page: add one (its own WireGuard keys and listener), show its QR code and
`.conf`, remove it, and name any device the proxy has seen.

Every route here needs the household's log-in (the set-up page itself is public, but shows the
phones' codes only to a logged-in household): a phone's configuration holds its private key.
Nothing here logs a configuration or a key. The proxy picks a change up within seconds
(`capture.listeners`): a removed phone's listener stops, and its keys are forgotten at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Blueprint, Response, abort, current_app, flash, redirect, request, url_for
from markupsafe import Markup
from werkzeug.wrappers import Response as Redirect

from instaflyd.capture.wireguard import add_device, client_conf
from instaflyd.config import Config
from instaflyd.network import is_loopback, lan_address
from instaflyd.store.devices import (
    NAME_MAX,
    DeviceBudgetFull,
    WireGuardDevice,
    get_wireguard_device,
    rename_device,
    revoke_wireguard_device,
    wireguard_devices,
)
from instaflyd.web.database import get_db

bp = Blueprint("phones", __name__)

DEVICE_KEY_MAX = 64  # wg:<id> or ip:<IPv6 address>


@dataclass(frozen=True)
class PhoneCard:
    """A phone as the set-up page shows it to the logged-in household."""

    id: int
    key: str
    name: str
    port: int
    created: float
    conf: str  # its WireGuard configuration: a secret
    download: str  # the .conf's URL


def _config() -> Config:
    return current_app.config["INSTAFLY"]


def endpoint_host(config: Config) -> str:
    """Where phones send their WireGuard packets: wireguard.endpoint, else the box's address."""
    return config.wireguard.endpoint or lan_address(config.proxy.listen_host)


def box_address(config: Config) -> str:
    """The address phones open the page on (left out of their tunnel): the page's own address,
    or the box's LAN address when the page listens on every address (or only on loopback,
    where the set-up page warns that phones cannot reach it)."""
    address = lan_address(config.web.host)
    return lan_address() if is_loopback(address) else address


def phone_conf(config: Config, device: WireGuardDevice) -> str:
    return client_conf(device, endpoint_host(config), box_address(config))


def phone_cards(config: Config) -> list[PhoneCard]:
    return [
        PhoneCard(
            id=device.id,
            key=device.key,
            name=device.name,
            port=device.port,
            created=device.created,
            conf=phone_conf(config, device),
            download=url_for("phones.download", device_id=device.id),
        )
        for device in wireguard_devices(get_db().conn)
    ]


def _name(field: str = "name") -> str:
    name = " ".join((request.form.get(field) or "").split())  # no newlines, no runs of spaces
    if len(name) > NAME_MAX:
        abort(400, f"A name has at most {NAME_MAX} characters.")
    return name


def _back(anchor: str = "phones") -> Redirect:
    return redirect(url_for("pages.setup", _anchor=anchor))


@bp.post("/setup/phones")
def add() -> Redirect:
    config = _config()
    if not config.wireguard.enabled:
        flash("WireGuard is turned off (wireguard.enabled in the config).", "error")
        return _back()
    name = _name()
    db = get_db()
    try:
        with db.transaction() as conn:
            count = len(wireguard_devices(conn))
            device = add_device(conn, config, name or f"Phone {count + 1}")
    except DeviceBudgetFull as exc:
        flash(f"No phone added: {exc}. Remove one first.", "error")
        return _back()
    flash(
        f"{device.name} added: scan its code with the WireGuard app on that phone (the box "
        "starts listening for it within seconds).",
        "ok",
    )
    return _back(f"phone-{device.id}")


@bp.post("/setup/phones/<row_id:device_id>/remove")
def remove(device_id: int) -> Redirect:
    db = get_db()
    with db.transaction() as conn:
        device = get_wireguard_device(conn, device_id)
        removed = revoke_wireguard_device(conn, device_id)
    if not removed or device is None:
        flash("That phone was removed already.", "error")
    else:
        flash(
            f"{device.name} removed: the box no longer accepts it (within seconds). Delete the "
            "tunnel in its WireGuard app.",
            "ok",
        )
    return _back()


@bp.get("/setup/phones/<row_id:device_id>.conf")
def download(device_id: int) -> Response:
    device = get_wireguard_device(get_db().conn, device_id)
    if device is None or device.revoked is not None:
        abort(404)
    response = Response(phone_conf(_config(), device), mimetype="text/plain")
    response.headers["Content-Disposition"] = f'attachment; filename="instafly-{device.id}.conf"'
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/devices/name")
def name_device() -> Redirect:
    key = request.form.get("key") or ""
    if len(key) > DEVICE_KEY_MAX:
        abort(400, "Not a device.")
    name = _name()
    with get_db().transaction() as conn:
        renamed = rename_device(conn, key, name)
    if renamed:
        flash(f"Named {name!r}." if name else "Name removed.", "ok")
    else:
        flash("No such device.", "error")
    return _back("devices")


def qr_for(card: PhoneCard) -> Markup:
    """The phone's configuration as a QR code for the WireGuard app (low error correction: the
    configuration is long, and a screen is a clean source). Sized by its viewBox, so that it
    fits a phone's screen (setup.css)."""
    import segno

    code = segno.make(card.conf, error="l")
    return Markup(code.svg_inline(scale=4, border=2, dark="#111", light="#fff", omitsize=True))
