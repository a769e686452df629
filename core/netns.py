"""Start a bubblewrap sandbox in a network namespace of its own, with outbound access only.

Run as `python -I netns.py [--host-loopback] SLIRP4NETNS BWRAP [OPTION]... -- COMMAND...`
(core.sandbox builds it; standard library only). A holder process makes a new network
namespace; slirp4netns gives it a tap interface (10.0.2.100) routed through user-mode NAT, with
`--disable-host-loopback`: the host's loopback services (the Prefect API, `autoresearch inbox`,
anything on 127.0.0.1) stay out of reach. Then bwrap starts in that namespace, once its network
is up. Names resolve through slirp's DNS at 10.0.2.3. This process exits with the sandbox's
exit code, in its process group, so a kill of the group ends them all.
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
HOST_LOOPBACK = "--host-loopback"  # the host's 127.0.0.1 as 10.0.2.2: an agent's local model


def _holder(root: bool) -> subprocess.Popen[bytes]:
    """A process in a new network namespace (and, for a user, a user namespace that owns it):
    bwrap joins it. bwrap cannot make it itself: slirp4netns cannot join a namespace bwrap made
    as root (its user namespace changes under it), and it races bwrap's own loopback setup."""
    flags = ["--net"] if root else ["--user", "--map-root-user", "--net"]
    holder = subprocess.Popen(
        ["unshare", *flags, "--", "cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL
    )
    ours = os.readlink("/proc/self/ns/net")
    deadline = time.monotonic() + NAMESPACE_WAIT_S
    while time.monotonic() < deadline and holder.poll() is None:
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{holder.pid}/ns/net") != ours:
                return holder
        time.sleep(0.001)
    holder.kill()
    raise RuntimeError("could not make a network namespace (unshare --net)")


def _network(slirp: str, pid: int, root: bool, loopback: bool) -> subprocess.Popen[bytes]:
    """slirp4netns serving the namespace of pid, once it says it is ready."""
    ready_r, ready_w = os.pipe()
    userns = [] if root else [f"--userns-path=/proc/{pid}/ns/user"]
    closed = [] if loopback else ["--disable-host-loopback"]
    net = subprocess.Popen(
        [slirp, "--configure", "--mtu=65520", *closed, *userns,
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


def main(argv: list[str]) -> int:
    loopback = argv[0] == HOST_LOOPBACK
    slirp, bwrap, rest = argv[loopback], argv[loopback + 1], argv[loopback + 2 :]
    root = os.geteuid() == 0
    split = rest.index("--")
    holder = _holder(root)
    net: subprocess.Popen[bytes] | None = None
    try:
        net = _network(slirp, holder.pid, root, loopback)
        resolv_r, resolv_w = os.pipe()
        os.write(resolv_w, RESOLV_CONF)
        os.close(resolv_w)
        enter = [f"--net=/proc/{holder.pid}/ns/net"]
        if not root:
            enter += [f"--user=/proc/{holder.pid}/ns/user", "--preserve-credentials"]
        resolv = ["--ro-bind-data", str(resolv_r), "/etc/resolv.conf"]
        sandbox = subprocess.Popen(
            ["nsenter", *enter, "--", bwrap, *rest[:split], *resolv, *rest[split:]],
            pass_fds=(resolv_r,),
        )
        os.close(resolv_r)
        signal.signal(signal.SIGTERM, lambda *_: sandbox.terminate())
        code = sandbox.wait()
    except RuntimeError as exc:
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
