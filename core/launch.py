"""Start a bubblewrap sandbox in namespaces the tool prepares: a user namespace, when the tool
runs as root, and a network namespace, when the evaluation asks for the network.

Run as `python -I launch.py [--nobody] [--network SLIRP4NETNS [--host-loopback]] BWRAP
[OPTION]... -- COMMAND...` (core.sandbox builds it; standard library only).

`--nobody`: a holder process makes a user namespace whose uid and gid maps are `0 0 1` and
`65534 65534 1`, and bwrap joins it (`--userns`). bwrap then sets the sandbox up as the
namespace's root, and the command drops to 65534 (setpriv, in core.sandbox): a uid that is
65534 on the host too, so that no root-owned file (/etc/shadow, the tool's keys) is its own.
bwrap's own `--unshare-user --uid` maps the sandbox's uid to the host's root instead.

`--network`: the holder's namespace has a network namespace too; slirp4netns gives it a tap
interface (10.0.2.100) routed through user-mode NAT, with `--disable-host-loopback` unless
`--host-loopback`: the host's loopback services (the Prefect API, `autoresearch inbox`,
anything on 127.0.0.1) stay out of reach. Names resolve through slirp's DNS at 10.0.2.3.
bwrap cannot make this namespace itself: slirp4netns would race its loopback setup.

This process exits with the sandbox's exit code, in its process group, so a kill of the group
ends them all.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

RESOLV_CONF = b"nameserver 10.0.2.3\n"
NAMESPACE_WAIT_S = 5.0
NOBODY = 65534
ID_MAP = f"0 0 1\n{NOBODY} {NOBODY} 1\n".encode()


def _holder(user_map: bool, network: bool) -> subprocess.Popen[bytes]:
    """A process in the new namespaces (its user namespace mapped, when asked)."""
    root = os.geteuid() == 0
    flags = ["--user"] + ([] if user_map or root else ["--map-root-user"])
    flags += ["--net"] if network else []
    holder = subprocess.Popen(
        ["unshare", *flags, "--", "cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL
    )
    ours = os.readlink("/proc/self/ns/user")
    deadline = time.monotonic() + NAMESPACE_WAIT_S
    while time.monotonic() < deadline and holder.poll() is None:
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{holder.pid}/ns/user") != ours:
                if user_map:
                    _map(holder.pid)
                return holder
        time.sleep(0.001)
    holder.kill()
    raise RuntimeError("could not make a namespace (unshare)")


def _map(pid: int) -> None:
    """Root and nobody, each to itself: one write per file, as the kernel wants."""
    for name, data in (("uid_map", ID_MAP), ("setgroups", b"allow"), ("gid_map", ID_MAP)):
        fd = os.open(f"/proc/{pid}/{name}", os.O_WRONLY)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)


def _network(slirp: str, pid: int, loopback: bool) -> subprocess.Popen[bytes]:
    """slirp4netns serving the network namespace of pid, once it says it is ready."""
    ready_r, ready_w = os.pipe()
    closed = [] if loopback else ["--disable-host-loopback"]
    net = subprocess.Popen(
        [slirp, "--configure", "--mtu=65520", *closed, f"--userns-path=/proc/{pid}/ns/user",
         "-r", str(ready_w), str(pid), "tap0"],
        pass_fds=(ready_w,), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    os.close(ready_w)
    with os.fdopen(ready_r, "rb") as ready:
        if ready.read(1) != b"1":
            why = net.stderr.read().decode(errors="replace").strip() if net.stderr else ""
            net.kill()
            raise RuntimeError(f"slirp4netns could not give it a network: {why}")
    return net


def _options(argv: list[str]) -> tuple[bool, str | None, bool, list[str]]:
    nobody = argv[:1] == ["--nobody"]
    argv = argv[nobody:]
    slirp = argv[1] if argv[:1] == ["--network"] else None
    argv = argv[2:] if slirp else argv
    loopback = argv[:1] == ["--host-loopback"]
    return nobody, slirp, loopback, argv[loopback:]


def main(argv: list[str]) -> int:
    nobody, slirp, loopback, (bwrap, *rest) = _options(argv)
    split = rest.index("--")
    holder = _holder(nobody, slirp is not None)
    net: subprocess.Popen[bytes] | None = None
    fds: list[int] = []
    try:
        ours, enter = [], []
        if nobody:
            fds.append(os.open(f"/proc/{holder.pid}/ns/user", os.O_RDONLY))
            ours += ["--userns", str(fds[-1])]
        if slirp is not None:
            net = _network(slirp, holder.pid, loopback)
            resolv_r, resolv_w = os.pipe()
            os.write(resolv_w, RESOLV_CONF)
            os.close(resolv_w)
            fds.append(resolv_r)
            ours += ["--perms", "0644", "--ro-bind-data", str(resolv_r), "/etc/resolv.conf"]
            enter = ["nsenter", f"--net=/proc/{holder.pid}/ns/net"]
            if not nobody:  # a user's: the namespace that owns the network is the sandbox's
                enter += [f"--user=/proc/{holder.pid}/ns/user", "--preserve-credentials"]
            enter.append("--")
        sandbox = subprocess.Popen(
            [*enter, bwrap, *rest[:split], *ours, *rest[split:]], pass_fds=fds
        )
        for fd in fds:
            os.close(fd)
        signal.signal(signal.SIGTERM, lambda *_: sandbox.terminate())
        code = sandbox.wait()
    except (RuntimeError, OSError) as exc:
        print(f"sandbox: {exc}", file=sys.stderr)
        return 125
    finally:
        for process in (net, holder):
            if process is not None:
                process.kill()
                process.wait()
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
