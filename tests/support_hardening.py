"""Run a command under the restrictions of systemd/instaflyd.service, without systemd.

Tests cannot start the unit (systemd is not PID 1 here), so this launcher applies what could
break TensorFlow or mitmproxy, read from the unit file itself:

- ProcSubset=pid, ProtectProc=invisible: a private /proc mounted with subset=pid,hidepid=invisible
  (no /proc/cpuinfo, /proc/meminfo, /proc/sys; only our own processes), in new mount and PID
  namespaces;
- ProtectSystem=strict, ReadWritePaths, PrivateTmp: every mount read-only except /dev, /proc,
  /sys, /tmp and the --writable folders (the unit's StateDirectory and /srv/instafly);
- SystemCallFilter (both lines), SystemCallErrorNumber=EPERM, RestrictAddressFamilies,
  NoNewPrivileges: a seccomp filter built with libseccomp from the same groups;
- Environment=HOME=<state directory>.

Usage: python support_hardening.py --writable DIR [--writable DIR ...] -- COMMAND [ARG...]
Exit status 77 (with the reason on stderr) when this machine cannot do it (not root, no
libseccomp); otherwise the command's own status.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import errno
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "instaflyd.service"
CANNOT = 77

CLONE_NEWNS, CLONE_NEWPID = 0x00020000, 0x20000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_EQ = 4
KERNEL_FILESYSTEMS = ("/proc", "/sys", "/dev")


def scmp_act_errno(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


class ScmpArgCmp(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


def unit_settings(name: str) -> list[str]:
    return re.findall(rf"^{name}=(.*)$", UNIT.read_text(), re.M)


def syscall_groups() -> dict[str, list[str]]:
    """systemd's syscall groups (`systemd-analyze syscall-filter`), nested groups unexpanded."""
    listing = subprocess.run(
        ["systemd-analyze", "syscall-filter"], capture_output=True, text=True, check=True
    ).stdout
    groups: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in listing.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.strip(), [])
        elif line.startswith("    ") and current is not None and not line.strip().startswith("#"):
            current.append(line.strip())
        elif not line.strip():
            current = None
    return groups


def expand(names: list[str], groups: dict[str, list[str]]) -> set[str]:
    out: set[str] = set()
    for name in names:
        out |= expand(groups[name], groups) if name.startswith("@") else {name}
    return out


def allowed_syscalls() -> set[str]:
    """The unit's SystemCallFilter lines, applied in order as systemd does."""
    groups = syscall_groups()
    allowed: set[str] = set()
    for setting in unit_settings("SystemCallFilter"):
        if setting.startswith("~"):
            allowed -= expand(setting[1:].split(), groups)
        else:
            allowed |= expand(setting.split(), groups)
    return allowed


def address_families() -> list[int]:
    [setting] = unit_settings("RestrictAddressFamilies")
    return [int(getattr(socket, name)) for name in setting.split()]


def load_seccomp(allowed: set[str], families: list[int]) -> None:
    lib = ctypes.CDLL(ctypes.util.find_library("seccomp") or "libseccomp.so.2", use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(ScmpArgCmp),
    ]  # fmt: skip
    [error_number] = unit_settings("SystemCallErrorNumber")
    ctx = lib.seccomp_init(ctypes.c_uint32(scmp_act_errno(getattr(errno, error_number))))
    for name in sorted(allowed - {"socket"}):
        number = lib.seccomp_syscall_resolve_name(name.encode())
        if number >= 0:  # names of other architectures resolve to -1
            lib.seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, number, 0, None)
    socket_number = lib.seccomp_syscall_resolve_name(b"socket")
    for family in families:  # RestrictAddressFamilies: socket() only for these
        condition = ScmpArgCmp(0, SCMP_CMP_EQ, family, 0)
        lib.seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, socket_number, 1, ctypes.byref(condition))
    if lib.seccomp_load(ctypes.c_void_p(ctx)) != 0:  # also sets no_new_privs
        raise OSError(ctypes.get_errno(), "seccomp_load failed")


def mount(libc: ctypes.CDLL, source: str | None, target: str, fstype: str | None, flags: int,
          data: str | None = None) -> None:  # fmt: skip
    encode = lambda value: value.encode() if value is not None else None  # noqa: E731
    if libc.mount(encode(source), encode(target), encode(fstype), flags, encode(data)) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"mount {target}: {os.strerror(code)}")


def mount_points() -> list[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        points.append(point)
    return points


def protect(libc: ctypes.CDLL, writable: list[Path]) -> None:
    """Inside the new namespaces: private /proc subset, read-only system, writable exceptions."""
    mount(libc, None, "/", None, MS_REC | MS_PRIVATE)
    keep = [str(path.resolve()) for path in writable] + ["/tmp"]
    for path in keep:
        mount(libc, path, path, None, MS_BIND | MS_REC)
    for point in mount_points():
        inside_kept = any(point == k or point.startswith(k.rstrip("/") + "/") for k in keep)
        kernel = any(point == k or point.startswith(k + "/") for k in KERNEL_FILESYSTEMS)
        if inside_kept or kernel:
            continue
        # Mounts hidden below others cannot be reached (and need not be).
        with contextlib.suppress(OSError):
            mount(libc, None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
    mount(libc, "proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC,
          "subset=pid,hidepid=invisible")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--writable", type=Path, action="append", default=[])
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if os.geteuid() != 0:
        print("needs root for mount and PID namespaces", file=sys.stderr)
        return CANNOT
    if not ctypes.util.find_library("seccomp"):
        print("libseccomp is missing (apt install libseccomp2)", file=sys.stderr)
        return CANNOT
    allowed, families = allowed_syscalls(), address_families()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS | CLONE_NEWPID) != 0:
        print(f"unshare: {os.strerror(ctypes.get_errno())}", file=sys.stderr)
        return CANNOT
    child = os.fork()
    if child == 0:  # PID 1 of the new namespace
        try:
            protect(libc, args.writable)
            env = {**os.environ, "HOME": str(args.writable[0])} if args.writable else os.environ
            load_seccomp(allowed, families)
            os.execvpe(command[0], command, env)
        except BaseException as exc:
            print(f"support_hardening: {exc}", file=sys.stderr)
            os._exit(CANNOT)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda number, _frame: os.kill(child, number))
    _, status = os.waitpid(child, 0)
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main())
