"""The exceptions of shmc: which error raises which, and what it says."""
import os
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import (DaemonProc, daemon_binary, die_with_parent,
                      own_daemon, stop_daemon)

import shmc


def test_errors_form_a_hierarchy_under_shmc_error():
    for e in (shmc.DaemonUnavailable, shmc.AccessDenied,
              shmc.VersionMismatch, shmc.ValueTooLarge, shmc.LockTimeout,
              shmc.NotANumber, shmc.BufferTooSmall):
        assert issubclass(e, shmc.Error)
    assert issubclass(shmc.DaemonUnavailable, ConnectionError)
    assert issubclass(shmc.AccessDenied, PermissionError)
    assert issubclass(shmc.LockTimeout, TimeoutError)
    assert issubclass(shmc.ValueTooLarge, ValueError)


def test_errors_no_daemon_at_the_socket():
    path = os.path.join(tempfile.mkdtemp(), "none.sock")
    with pytest.raises(shmc.DaemonUnavailable) as e:
        shmc.Client(path)
    assert path in str(e.value)
    assert "start" in str(e.value)
    assert e.value.code == -10001  # SHMC_ENODAEMON


def test_errors_a_socket_nobody_listens_on():
    path = os.path.join(tempfile.mkdtemp(), "dead.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)  # bound, never listening: connections are refused
    try:
        with pytest.raises(shmc.DaemonUnavailable) as e:
            shmc.Client(path)
        assert path in str(e.value)
    finally:
        s.close()


def test_errors_socket_from_the_environment(sock, monkeypatch):
    monkeypatch.setenv("SHMC_SOCKET", sock)
    with shmc.Client() as c:
        c.ping()
    monkeypatch.setenv("SHMC_SOCKET", sock + ".missing")
    with pytest.raises(shmc.DaemonUnavailable, match="missing"):
        shmc.Client()


def nobody_daemon(extra=()):
    """A daemon run as nobody (65534), its socket in a folder of its own."""
    work = tempfile.mkdtemp(prefix="shmc-py-")
    os.chown(work, 65534, 65534)
    os.chmod(work, 0o755)

    def drop():
        die_with_parent()
        os.setgid(65534)
        os.setuid(65534)

    d = DaemonProc(daemon_binary(), extra=["--unlink-on-exit"] + list(extra),
                   workdir=work)
    d.start(preexec_fn=drop)
    return d


def test_errors_untrusted_daemon_is_access_denied(monkeypatch):
    if os.getuid() != 0:
        pytest.skip("needs root, to run the daemon as another user")
    d = nobody_daemon(["--allow-user", "0"])
    try:
        monkeypatch.delenv("SHMC_TRUST_UID", raising=False)
        with pytest.raises(shmc.AccessDenied,
                           match="SHMC_TRUST_UID=65534") as e:
            shmc.Client(d.sock)
        assert e.value.code == -10002  # SHMC_EUNTRUSTED
        monkeypatch.setenv("SHMC_TRUST_UID", "65534")  # as it says
        with shmc.Client(d.sock) as c:
            c.ping()
    finally:
        stop_daemon(d)


def test_errors_daemon_refusing_this_user_is_access_denied():
    if os.getuid() != 0:
        pytest.skip("needs root, to run a client as another user")
    # The daemon lets in root and uid 65533; a client as nobody (65534)
    # is refused.
    work = tempfile.mkdtemp(prefix="shmc-py-")
    os.chmod(work, 0o755)
    d = DaemonProc(daemon_binary(),
                   extra=["--unlink-on-exit", "--allow-user", "65533"],
                   workdir=work)
    d.start(preexec_fn=die_with_parent)
    try:
        r = subprocess.run(
            [sys.executable, "-c",
             "import os, sys\n"
             "os.setgid(65534); os.setuid(65534)\n"
             "import shmc\n"
             "try:\n"
             "    shmc.Client(sys.argv[1])\n"
             "except shmc.AccessDenied as e:\n"
             "    print('denied:', e); sys.exit(0)\n"
             "sys.exit(2)\n", d.sock],
            capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "allow" in r.stdout
    finally:
        stop_daemon(d)


def test_errors_replaced_region_is_a_version_mismatch():
    with own_daemon() as d:
        c = shmc.Client(d.sock)
        c.set("k", b"v")
        d.stop()
        d.unlink()
        # A new region on the same socket and name.
        d.start(preexec_fn=die_with_parent)
        # Another client takes the new region's first client id, which
        # is c's in the old one: c cannot get its id back.
        other = shmc.Client(d.sock)
        with pytest.raises(shmc.VersionMismatch, match="open a new one"):
            c.ping()
        c.close()
        other.close()
        with shmc.Client(d.sock) as fresh:  # what the message says to do
            fresh.ping()
            assert fresh.get("k") is None


def test_errors_stopped_daemon_is_unavailable_for_control_calls():
    with own_daemon() as d:
        c = shmc.Client(d.sock)
        c.set("k", b"v")
        d.stop()
        assert c.get("k") == b"v"  # data calls go on, on the mapping
        with pytest.raises(shmc.DaemonUnavailable):
            c.ping()
        c.close()


def test_errors_stuck_lock_holder_is_a_lock_timeout():
    if os.environ.get("SHMC_TEST_FAULT_INJECTION") != "true":
        pytest.skip("needs a build with -Dfault_injection=true "
                    "(SHMC_FAULT)")
    with own_daemon(["--lock-timeout", "300"]) as d:
        # A process that stops inside the key's segment lock and stays.
        stuck = subprocess.Popen(
            [sys.executable, "-c",
             "import sys, shmc\n"
             "shmc.Client(sys.argv[1]).set('k', b'v')\n", d.sock],
            env=dict(os.environ, SHMC_FAULT="set-begin"),
            stderr=subprocess.PIPE)
        try:
            line = stuck.stderr.readline()
            assert b"shmc-fault: set-begin" in line
            c = shmc.Client(d.sock)
            with pytest.raises(shmc.LockTimeout, match="lock-timeout"):
                c.set("k", b"w")
            c.close()
        finally:
            stuck.kill()
            stuck.wait()
            stuck.stderr.close()


def test_errors_full_namespace_table_says_what_to_do():
    with own_daemon() as d, shmc.Client(d.sock) as c:
        for i in range(shmc.NS_MAX - len(c.namespaces())):
            assert c.add_namespace("full%d:" % i)
        with pytest.raises(shmc.Error, match="128 namespaces") as e:
            c.add_namespace("one-more:")
        assert e.value.code == -28  # -ENOSPC
