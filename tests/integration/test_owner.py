#!/usr/bin/env python3
"""Integration tests of who may serve what: one daemon per region (the
ownership lock of shared/owner.h), one daemon per socket path (PATH.lock),
restarts right after SIGKILL, the socket folder's trust and the allow
lists' reach.  The real daemon on throwaway sockets and region names.
Also: the systemd unit gives the daemon the folder the README saves
snapshots in.

    test_owner.py DAEMON_BINARY

Tests that act as other users or create groups need root and are skipped
without it.  Exits 77 when the host cannot run it.
"""
import grp
import os
import re
import pwd
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shmcproto as p  # noqa: E402

BINARY = None
NOBODY = 65534


def as_user(sock, uid, gids):
    """Connects to sock and pings, in a child process that runs as uid
    with gids (the first is its primary group).  Returns "served",
    "refused" (the daemon said EACCES), or "cannot connect: ERROR"."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never back into unittest
        os.close(rfd)
        try:
            os.setgroups(gids)
            os.setgid(gids[0])
            os.setuid(uid)
            try:
                c = p.Client(sock, timeout=10)
            except OSError as e:
                out = f"cannot connect: {e}"
            else:
                try:
                    c.ping()
                    out = "served"
                except p.ProtoError as e:
                    out = "refused" if e.err == p.EACCES else f"error {e}"
                except (OSError, EOFError) as e:
                    out = f"cannot connect: {e}"
        except BaseException as e:  # noqa: BLE001 - reported, not raised
            out = f"child failed: {e!r}"
        os.write(wfd, out.encode())
        os._exit(0)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as f:
        out = f.read().decode()
    os.waitpid(pid, 0)
    return out


def open_dir(path):
    """A fresh folder at path that other users can enter (0755), as are
    its parents up to /tmp: the allowed peers must reach sockets in it."""
    os.makedirs(path, 0o755)
    while path not in ("/", "/tmp"):
        os.chmod(path, 0o755)
        path = os.path.dirname(path)


class Owner(unittest.TestCase):
    def setUp(self):
        self.procs = []

    def tearDown(self):
        for d in self.procs:
            d.stop(sig=signal.SIGKILL)
            d.unlink()

    def daemon(self, **kw):
        d = p.DaemonProc(BINARY, **kw)
        self.procs.append(d)
        return d

    def open_workdir(self):
        """A fresh work folder under /tmp that other users can enter
        (open_dir), removed after the test."""
        base = tempfile.mkdtemp(dir="/tmp", prefix="shmc-own-")
        self.addCleanup(shutil.rmtree, base, True)
        work = os.path.join(base, "w")
        open_dir(work)
        return work

    def run_daemon(self, d, extra=()):
        """Runs d's command line with extra to its end (a start that must
        fail): its exit status and log."""
        r = subprocess.run(d.args() + list(extra), stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True, timeout=30)
        return r.returncode, d.logtext() + r.stderr

    def test_owner_second_daemon_on_a_region_is_refused(self):
        a = self.daemon().start()
        c = p.Client(a.sock)
        c.set(b"k", b"first")
        c.close()
        ino = os.stat("/dev/shm" + a.name).st_ino
        for extra in ([], ["--reset"]):
            b = self.daemon(name=a.name)
            rc, log = self.run_daemon(b, extra)
            self.assertNotEqual(rc, 0, log)
            self.assertIn(f"owned by a running shmcached (pid {a.proc.pid})",
                          log)
            self.assertNotIn("adopted", log)
            self.assertFalse(os.path.exists(b.sock))
            # Nothing changed under the first daemon.
            self.assertEqual(os.stat("/dev/shm" + a.name).st_ino, ino)
            c = p.Client(a.sock)
            self.assertEqual(c.get(b"k")[0], b"first")
            c.close()

    def test_owner_simultaneous_starts_leave_one_owner(self):
        for _ in range(10):
            a = self.daemon()
            b = self.daemon(name=a.name)
            a.start(wait=False)
            b.start(wait=False)
            for d in (a, b):
                d.proc.stderr.close()
                d.proc.stderr = None
            # One of them ends (refused); the other serves.
            end = time.monotonic() + 30
            while a.proc.poll() is None and b.proc.poll() is None:
                self.assertLess(time.monotonic(), end, "neither refused")
                time.sleep(0.01)
            lost, won = (a, b) if a.proc.poll() is not None else (b, a)
            self.assertNotEqual(lost.proc.returncode, 0, lost.logtext())
            self.assertIn(f"(pid {won.proc.pid})", lost.logtext())
            won.wait_ready(timeout=30)
            c = p.Client(won.sock)
            c.set(b"k", b"v")
            self.assertEqual(c.get(b"k")[0], b"v")
            c.close()
            won.stop()
            won.unlink()

    def test_owner_restart_right_after_sigkill_always_works(self):
        d = self.daemon().start()
        c = p.Client(d.sock)
        c.set(b"kept", b"across kills")
        c.close()
        for i in range(25):
            d.proc.kill()
            d.proc.wait()
            d.proc.stderr.close()
            d.start(wait=False)
            try:
                d.wait_ready(timeout=30)
            except (RuntimeError, TimeoutError) as e:
                self.fail(f"restart {i + 1} failed: {e}")
        c = p.Client(d.sock)
        self.assertEqual(c.get(b"kept")[0], b"across kills")
        c.close()

    def test_owner_restart_recovers_locks_the_killed_daemon_held(self):
        """A daemon killed inside a segment lock leaves it under id 1,
        the id every daemon attaches with: the next one takes it over."""
        import mmap
        d = self.daemon().start()
        d.proc.kill()
        d.proc.wait()
        d.proc.stderr.close()
        # As the killed daemon left them: every lock held by id 1, one
        # segment mid-write.
        fd = os.open("/dev/shm" + d.name, os.O_RDWR)
        try:
            m = mmap.mmap(fd, 0)
            nseg, = struct.unpack_from("<I", m, 12)
            base, stride = struct.unpack_from("<QQ", m, 24)  # layout.h
            for i in range(nseg):
                struct.pack_into("<I", m, base + i * stride, 1 << 1)
            seq, = struct.unpack_from("<I", m, base + 4)
            struct.pack_into("<I", m, base + 4, seq | 1)
            m.close()
        finally:
            os.close(fd)
        d.start()
        c = p.Client(d.sock)
        for i in range(4 * nseg):
            c.set(b"k%d" % i, b"v%d" % i)
        for i in range(4 * nseg):
            self.assertEqual(c.get(b"k%d" % i)[0], b"v%d" % i)
        c.close()
        self.assertIn(f"the previous daemon died holding {nseg} segment "
                      "lock(s): recovered", d.logtext())

    def test_owner_snapshot_of_a_claimed_file_is_refused_and_keeps_the_claim(self):
        """Opening and closing the region (or PATH.lock) would drop the
        daemon's claim on it (fcntl(2)): SAVE and LOAD refuse them."""
        a = self.daemon().start()
        c = p.Client(a.sock)
        c.set(b"kept", b"yes")
        for req, path in (("LOAD", "/dev/shm" + a.name),
                          ("SAVE", "/dev/shm" + a.name),
                          ("LOAD", a.sock + ".lock"),
                          ("SAVE", a.sock + ".lock")):
            with self.assertRaises(p.ProtoError) as cm:
                c.call(req, p.bstr(path))
            self.assertEqual(cm.exception.err, p.EINVAL)
            self.assertIn("a file this daemon serves", cm.exception.msg)
        c.close()
        # Still the only owner of both; the region still under its name.
        b = self.daemon(name=a.name)
        b.log = os.path.join(b.dir, "b.log")
        rc, log = self.run_daemon(b)
        self.assertNotEqual(rc, 0, log)
        self.assertIn(f"(pid {a.proc.pid})", log)
        b = self.daemon(workdir=a.dir)
        b.log = os.path.join(a.dir, "b2.log")
        rc, log = self.run_daemon(b)
        self.assertNotEqual(rc, 0, log)
        self.assertIn(f"another shmcached (pid {a.proc.pid}) is serving", log)
        c = p.Client(a.sock)
        self.assertEqual(c.get(b"kept")[0], b"yes")
        c.close()

    def test_owner_socket_of_a_live_daemon_is_refused(self):
        a = self.daemon().start()
        b = self.daemon(workdir=a.dir)
        b.log = os.path.join(a.dir, "b.log")
        rc, log = self.run_daemon(b)
        self.assertNotEqual(rc, 0, log)
        self.assertIn(f"another shmcached (pid {a.proc.pid}) is serving "
                      f"{a.sock}", log)
        # The region it created for nothing is gone; the first serves.
        self.assertFalse(os.path.exists("/dev/shm" + b.name))
        a.wait_ready()

    def test_owner_socket_path_that_is_not_a_socket_is_kept(self):
        d = self.daemon()
        with open(d.sock, "w") as f:
            f.write("mine")
        rc, log = self.run_daemon(d)
        self.assertNotEqual(rc, 0, log)
        self.assertIn("exists and is not a socket", log)
        with open(d.sock) as f:
            self.assertEqual(f.read(), "mine")

    def test_owner_socket_folder_others_can_write_is_refused(self):
        d = self.daemon()
        folder = os.path.join(d.dir, "shared")
        os.mkdir(folder)
        os.chmod(folder, 0o777)
        d.sock = os.path.join(folder, "s.sock")
        rc, log = self.run_daemon(d)
        self.assertNotEqual(rc, 0, log)
        self.assertIn(f"socket folder {folder} (owner uid {os.geteuid()}, "
                      "mode 0777) can be written by other users", log)
        self.assertIn("chmod go-w", log)
        self.assertEqual(os.listdir(folder), [])

    @unittest.skipUnless(os.getuid() == 0, "needs root to chown")
    def test_owner_socket_folder_of_another_user_is_refused(self):
        d = self.daemon()
        folder = os.path.join(d.dir, "shmcached-0")
        os.mkdir(folder, 0o700)
        os.chown(folder, NOBODY, NOBODY)
        d.sock = os.path.join(folder, "s.sock")
        rc, log = self.run_daemon(d)
        self.assertNotEqual(rc, 0, log)
        self.assertIn(f"socket folder {folder} belongs to uid {NOBODY} "
                      "(mode 0700), not to this user", log)
        self.assertEqual(os.listdir(folder), [])

    @unittest.skipUnless(os.getuid() == 0, "needs root to plant a link as "
                         "another user")
    def test_owner_socket_folder_linked_by_another_user_is_refused(self):
        """Another user's link to a folder of ours: it could be pointed
        elsewhere later, so it is not trusted, whatever it points to."""
        d = self.daemon()
        mine = os.path.join(d.dir, "mine")
        os.mkdir(mine, 0o700)
        link = os.path.join(d.dir, "shmcached-0")
        os.symlink(mine, link)
        os.lchown(link, NOBODY, NOBODY)
        d.sock = os.path.join(link, "s.sock")
        rc, log = self.run_daemon(d)
        self.assertNotEqual(rc, 0, log)
        self.assertIn(f"socket folder {link} is a symbolic link of uid "
                      f"{NOBODY}", log)
        self.assertEqual(os.listdir(mine), [])

    @unittest.skipUnless(os.getuid() == 0, "needs root to act as another "
                         "user")
    def test_owner_allow_user_after_a_private_run(self):
        work = self.open_workdir()
        d = self.daemon(workdir=work)
        d.sock = os.path.join(work, "shmcached-run", "s.sock")
        d.start()  # no allow list: its folder is made private
        self.assertEqual(os.stat(os.path.dirname(d.sock)).st_mode & 0o777,
                         0o700)
        self.assertEqual(as_user(d.sock, NOBODY, [NOBODY]).split(":")[0],
                         "cannot connect")
        d.stop()
        d.extra = ["--allow-user", str(NOBODY)]
        d.start()
        self.assertEqual(as_user(d.sock, NOBODY, [NOBODY]), "served")
        d.stop()
        # A folder that is not shmcached's own is not opened: refused,
        # with what to do.
        other = os.path.join(work, "private")
        os.mkdir(other, 0o700)
        d.sock = os.path.join(other, "s.sock")
        rc, log = self.run_daemon(d)
        self.assertNotEqual(rc, 0, log)
        self.assertIn(f"its folder {other} has mode 0700; run chmod 0755 "
                      f"{other}", log)
        self.assertEqual(os.stat(other).st_mode & 0o777, 0o700)

    @unittest.skipUnless(os.getuid() == 0, "needs root to act as another "
                         "user")
    def test_owner_allow_user_through_an_acl(self):
        work = self.open_workdir()
        folder = os.path.join(work, "acl")
        os.mkdir(folder, 0o700)
        # u::rwx u:NOBODY:--x g::--- m::--x o::--- (the kernel's format)
        anyone = 0xffffffff
        acl = struct.pack("<I", 2) + b"".join(
            struct.pack("<HHI", tag, perm, who) for tag, perm, who in
            [(1, 7, anyone), (2, 1, NOBODY), (4, 0, anyone),
             (0x10, 1, anyone), (0x20, 0, anyone)])
        try:
            os.setxattr(folder, "system.posix_acl_access", acl)
        except OSError as e:
            self.skipTest(f"no POSIX ACLs here: {e}")
        d = self.daemon(workdir=work,
                        extra=["--allow-user", str(NOBODY)])
        d.sock = os.path.join(folder, "s.sock")
        d.start()  # mode 0710, but the ACL lets nobody in
        self.assertEqual(as_user(d.sock, NOBODY, [NOBODY]), "served")
        self.assertEqual(os.stat(folder).st_mode & 0o777, 0o710)

    @unittest.skipUnless(os.getuid() == 0 and shutil.which("groupadd") and
                         shutil.which("useradd"),
                         "needs root, groupadd and useradd")
    def test_owner_every_allowed_group_can_connect(self):
        tag = f"sc{os.getpid() % 100000}"
        g1, g2, user = tag + "a", tag + "b", tag + "u"
        for g in (g1, g2):
            subprocess.run(["groupadd", g], check=True)
            self.addCleanup(subprocess.run, ["groupdel", g])
        subprocess.run(["useradd", "-M", "-N", "-g", "nogroup"
                        if _group_exists("nogroup") else str(NOBODY),
                        "-G", g2, "-s", "/usr/sbin/nologin", user],
                       check=True)
        self.addCleanup(subprocess.run, ["userdel", user])
        uid = pwd.getpwnam(user).pw_uid
        gid2 = grp.getgrnam(g2).gr_gid
        primary = pwd.getpwnam(user).pw_gid

        work = self.open_workdir()
        d = self.daemon(workdir=work,
                        extra=["--allow-group", g1, "--allow-group", g2])
        d.start()
        # A member of the second group only.
        self.assertEqual(as_user(d.sock, uid, [primary, gid2]), "served")
        # Nobody (in neither group) reaches the socket and is refused.
        self.assertEqual(as_user(d.sock, NOBODY, [NOBODY]), "refused")


class ServiceUnit(unittest.TestCase):
    """daemon/systemd/shmcached.service as installed."""

    TOP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")

    def unit(self):
        with open(os.path.join(self.TOP, "daemon", "systemd",
                               "shmcached.service")) as f:
            return f.read()

    def test_owner_unit_provides_the_readmes_snapshot_folder(self):
        with open(os.path.join(self.TOP, "README.md")) as f:
            used = set(re.findall(r"/var/lib/([\w.-]+)/", f.read()))
        self.assertTrue(used, "the README names no /var/lib folder")
        given = set(re.findall(r"^StateDirectory=(.*)$", self.unit(), re.M))
        given = {w for line in given for w in line.split()}
        self.assertLessEqual(used, given)

    @unittest.skipUnless(shutil.which("systemd-analyze"),
                         "systemd-analyze not installed")
    def test_owner_unit_verifies(self):
        d = tempfile.mkdtemp()
        # The daemon where the unit expects it, without the man page.
        unit = re.sub(r"/usr/local/sbin/shmcached", BINARY, self.unit())
        unit = re.sub(r"(?m)^Documentation=.*$", "", unit)
        with open(os.path.join(d, "shmcached.service"), "w") as f:
            f.write(unit)
        shutil.copy(os.path.join(self.TOP, "daemon", "systemd",
                                 "shmcached.socket"), d)
        r = subprocess.run(["systemd-analyze", "verify",
                            os.path.join(d, "shmcached.service"),
                            os.path.join(d, "shmcached.socket")],
                           capture_output=True, text=True, timeout=60)
        if r.returncode and "Failed to" in r.stderr and "bus" in r.stderr:
            self.skipTest("systemd-analyze cannot run here: " + r.stderr)
        self.assertEqual(r.returncode, 0, r.stderr)


def _group_exists(name):
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def main():
    global BINARY
    BINARY = p.binaries(1, __doc__)[0]
    return p.run_tests(sys.argv[2:], "shmc-own-")


if __name__ == "__main__":
    sys.exit(main())
