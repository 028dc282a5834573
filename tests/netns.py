"""Network namespaces of a test's own, for what must not reach the host's network (multicast) or needs a network
set up just so (veth pairs, addresses that come and go).

The namespace is made with unshare(CLONE_NEWNET) on a thread of the test: that thread, the sockets it opens and the
processes it starts (gateways, clients, `ip`) live in it, and nothing else does. It needs root, as CI has; without
it the test fails rather than skips, so that what it checks cannot go unchecked unnoticed."""

from __future__ import annotations

import ctypes
import os
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import pytest

T = TypeVar("T")
CLONE_NEWNET = 0x40000000  # linux/sched.h
# Loopback that carries IPv4 multicast (mDNS): in a new namespace lo is down, and has no multicast flag or route.
LOOPBACK_MULTICAST = "ip link set lo up && ip link set lo multicast on && ip route add 224.0.0.0/4 dev lo"


def in_new_network_namespace(body: Callable[[], T], setup: str) -> T:
    """Runs `body` on a thread in a new network namespace, once the shell commands `setup` have run in it."""

    def run() -> T:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(CLONE_NEWNET) != 0:
            reason = os.strerror(ctypes.get_errno())
            pytest.fail(f"cannot make a network namespace: unshare(CLONE_NEWNET): {reason}. Run the tests as root.")
        try:
            done = subprocess.run(["sh", "-c", setup], check=False, capture_output=True, text=True, timeout=30)
        except FileNotFoundError as exc:
            pytest.fail(f"cannot set up the network namespace: {exc}")
        assert done.returncode == 0, f"the network namespace set-up failed (is iproute2 installed?): {done.stderr}"
        return body()

    with ThreadPoolExecutor(1) as thread:
        return thread.submit(run).result()
