"""The filesystem a jailed program sees: a minimal read-only root, or the host's with the interpreter made readable.

Modes (`--filesystem`):

- `jail` (preferred): in the zygote's private mount namespace, a read-only tmpfs root holding read-only binds of
  the system directories (/usr, /etc, ...), the interpreter's import paths and a few /dev nodes. Per run, fresh
  size-capped tmpfs mounts (no exec, no devices) give the program an empty /tmp and working directory and the judge
  a directory of its own, on fixed mount points in a read-only base; they are unmounted after the run, so no file
  outlives it. Children `chroot` into it: the user's home, run folders, datasets and caches do not exist there,
  and files a task names (`--hide`: e.g. a benchmark's data file, which holds its canonical solutions) are
  covered by empty ones. Needs a mount namespace: root, or the user namespace the zygote makes when not root.
- `mirror` (root without mount namespaces): the host's filesystem; when the interpreter lives where the
  unprivileged uid cannot read (pyenv, uv or conda under a mode-700 home), a world-readable copy of its
  standard library is put first on the children's `sys.path` (third-party packages stay unavailable).
- `host`: the host's filesystem as it is. `auto`: `jail`, else `mirror` as root; `jail` or refuse when not root
  (a program running as the user, on the user's files, is not isolated). In `mirror` and `host` a program can
  leave files where its uid may write (the host's /tmp) for a later run to find: only `jail` keeps runs apart.

A probe child then imports modules from disk exactly as programs will; if that fails the zygote refuses to
start with a message naming the directory, instead of silently scoring every correct program `failed`.
"""

import ctypes
import hashlib
import os
import shutil
import stat
import sys
import tempfile

CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 8, 32, 4096, 16384, 1 << 18
# statvfs flags a read-only remount must keep (in a user namespace they are locked): ST_* -> MS_*
KEPT_FLAGS = {1: 1, 2: 2, 4: 4, 8: 8, 1024: 1024, 2048: 2048, 4096: 1 << 21}
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
DEV_NODES = ("null", "zero", "full", "random", "urandom")
PROBE = ("textwrap", "calendar", "difflib", "csv", "pprint", "array", "unicodedata", "zlib", "ipaddress", "uuid")
JAIL_SIZE = "size=16m,nr_inodes=4096"  # the jail root's own tmpfs: directories and mount points
SCRATCH_SIZE = "size=256m,nr_inodes=16384"  # per run: the working directory, and /tmp
MNT_DETACH = 2
WORK = "/selfimprove-work"  # in the jail: a read-only base holding the fixed mount points of each run's working directories
RUN_DIR, JUDGE_DIR = WORK + "/run", WORK + "/judge"


class SandboxSetupError(Exception):
    """The sandbox cannot give its children a working, isolated interpreter; the message says why and what to do."""


class Layout:
    """What the children get: a jail root to chroot into (or None), the working-directory base, a sys.path override."""

    def __init__(self, info: dict, root: str | None, work: str, sys_path: list[str] | None = None, libc=None,
                 tmp_binds: tuple[str, ...] = (), tmp_hides: tuple[str, ...] = ()):
        self.info, self.root, self.work, self.sys_path, self.libc = info, root, work, sys_path, libc
        self.tmp = root is not None  # the jail gives every run a /tmp of its own
        # what lies under /tmp (an import path: a virtualenv made in /tmp; a file to hide in it) is mounted again on each
        # run's fresh /tmp
        self.tmp_binds, self.tmp_hides = tmp_binds, tmp_hides

    def prepare_run(self, uid: int | None, judge_uid: int | None) -> tuple[str, str, list[str]]:
        """(the program's working directory, the judge's, as each sees them; what `release` removes afterwards).

        Jail: fresh size-capped tmpfs mounts on fixed mount points (the working directories and /tmp), owned by the
        uid that uses each, in a base that is read-only, so nothing a program writes can outlast its run. Elsewhere:
        new directories under the zygote's folder (the host's /tmp stays shared: see the module docstring)."""
        if self.root is None:
            work = tempfile.mkdtemp(prefix="run-", dir=self.work)
            judge = tempfile.mkdtemp(prefix="judge-", dir=self.work)
            for d, owner in ((work, uid), (judge, judge_uid)):
                if owner is not None:
                    os.chown(d, owner, owner)
            return work, judge, [work, judge]
        mounts: list[str] = []
        try:
            for inner, mode, owner in ((RUN_DIR, "0700", uid), ("/tmp", "1777", None), (JUDGE_DIR, "0700", judge_uid)):
                owned = f",uid={owner},gid={owner}" if owner is not None else ""
                _mount(self.libc, "tmpfs", self.root + inner, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, f"mode={mode},{SCRATCH_SIZE}{owned}")
                mounts.append(self.root + inner)  # unmounting /tmp (lazily) takes the mounts below it too
                if inner == "/tmp":
                    for src in self.tmp_binds:
                        _bind(self.libc, src, self.root)
                    for h in self.tmp_hides:
                        _cover(self.libc, self.root + h)
        except OSError:
            self.release(mounts)
            raise
        return RUN_DIR, JUDGE_DIR, mounts

    def release(self, made: list[str]) -> None:
        """Unmount a run's tmpfs mounts (whatever a program wrote there, any depth, any size, is gone at once), or
        delete its directories (non-jail modes)."""
        for target in made:
            if self.root is not None:
                self.libc.umount2(os.fsencode(target), MNT_DETACH)
            else:
                remove_tree(target)

    def close(self) -> None:
        """Detach the jail root and remove its mount point."""
        if self.root is not None:
            self.libc.umount2(os.fsencode(self.root), MNT_DETACH)
            try:
                os.rmdir(self.root)
            except OSError:
                pass

    def enter(self) -> None:
        """In a child, before dropping privileges: chroot into the jail (or switch to the mirrored stdlib)."""
        if self.root is not None:
            os.chroot(self.root)
            os.chdir("/")
        if self.sys_path is not None:
            sys.path[:] = self.sys_path
            sys.path_importer_cache.clear()


def remove_tree(path: str) -> None:
    """Delete what a program left on the host filesystem (non-jail modes); never raises, however deep the tree."""
    limit = sys.getrecursionlimit()
    try:
        sys.setrecursionlimit(max(limit, 50_000))
        shutil.rmtree(path, ignore_errors=True)
    except BaseException:
        pass
    finally:
        sys.setrecursionlimit(limit)


def _errno() -> int:
    return ctypes.get_errno()


def _mount(libc, src, target, fstype, flags, data=None) -> None:
    enc = lambda s: None if s is None else os.fsencode(s)  # noqa: E731
    if libc.mount(enc(src), enc(target), enc(fstype), flags, enc(data)) != 0:
        raise OSError(_errno(), f"mount {src} on {target}: {os.strerror(_errno())}")


def import_paths() -> list[str]:
    """sys.path entries that exist, without entries inside another one."""
    out: list[str] = []
    for p in sorted({os.path.abspath(p) for p in sys.path if p and os.path.exists(p)}):
        if not any(p == q or p.startswith(q + os.sep) for q in out):
            out.append(p)
    return out


def _library_dir(p: str) -> bool:
    """A directory of installed code (the standard library, site- or dist-packages), shown whole in the jail."""
    import sysconfig

    stdlib = [os.path.abspath(sysconfig.get_paths()[k]) for k in ("stdlib", "platstdlib")]
    return "site-packages" in p or "dist-packages" in p or any(p == d or p.startswith(d + os.sep) for d in stdlib) or not os.path.isdir(p)


def importable_entries(p: str) -> list[str]:
    """What the jail shows of an import path that is not a library directory (an editable install's source tree, a
    PYTHONPATH entry): its packages (directories with `__init__.py`) and modules, never the rest of the folder (the
    project's run folders, whose tables hold other samples' completions and failing asserts, its tests, its .git)."""
    out = []
    for name in sorted(os.listdir(p)):
        path = os.path.join(p, name)
        if os.path.isdir(path) and os.path.isfile(os.path.join(path, "__init__.py")) and name.isidentifier():
            out.append(path)
        elif os.path.isfile(path) and name.endswith((".py", ".so")) and name.split(".")[0].isidentifier():
            out.append(path)
    return out


def _bind(libc, src: str, root: str, read_only: bool = True) -> None:
    target = root + src
    if os.path.isdir(src):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        open(target, "a").close()
    _mount(libc, src, target, None, MS_BIND | MS_REC)
    if read_only:
        kept = sum(ms for st, ms in KEPT_FLAGS.items() if os.statvfs(src).f_flag & st)
        _mount(libc, None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | kept)


def build_jail(libc, hide: list[str]) -> Layout:
    """A private mount namespace with a minimal read-only root for the children (see the module docstring)."""
    if libc.unshare(CLONE_NEWNS) != 0:
        raise OSError(_errno(), f"unshare(CLONE_NEWNS): {os.strerror(_errno())}")
    _mount(libc, None, "/", None, MS_REC | MS_PRIVATE)
    root = tempfile.mkdtemp(prefix="selfimprove-jail-")
    _mount(libc, "tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, f"mode=0755,{JAIL_SIZE}")
    bound = []
    for d in SYSTEM_DIRS:
        if os.path.islink(d):
            os.symlink(os.readlink(d), root + d)
        elif os.path.isdir(d):
            _bind(libc, d, root)
            bound.append(d)
    under_tmp = lambda p: p == "/tmp" or p.startswith("/tmp/")  # noqa: E731
    tmp_binds = []
    for p in import_paths():
        if not any(p == d or p.startswith(d + os.sep) for d in bound):
            for entry in [p] if _library_dir(p) else importable_entries(p):
                if under_tmp(entry):
                    tmp_binds.append(entry)  # mounted on each run's own /tmp
                else:
                    _bind(libc, entry, root)
                bound.append(entry)
    os.makedirs(root + "/dev")
    for n in DEV_NODES:
        if os.path.exists("/dev/" + n):
            _bind(libc, "/dev/" + n, root, read_only=False)
    os.makedirs(root + "/tmp")
    os.makedirs(root + WORK)
    hidden, tmp_hides = [], []
    for h in hide:
        h = os.path.abspath(h)
        if not (os.path.exists(h) and any(h == d or h.startswith(d + os.sep) for d in bound)):
            continue  # not in the jail at all
        if under_tmp(h):
            tmp_hides.append(h)
        else:
            _cover(libc, root + h)
        hidden.append(h)
    _mount(libc, "tmpfs", root + WORK, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64k,nr_inodes=16")
    for d in (RUN_DIR, JUDGE_DIR):
        os.mkdir(root + d)
    _mount(libc, None, root + WORK, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, "mode=0755,size=64k,nr_inodes=16")
    os.chmod(root, 0o755)
    _mount(libc, None, root, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, f"mode=0755,{JAIL_SIZE}")
    return Layout({"mode": "jail", "visible": bound, "hidden": hidden}, root, WORK, libc=libc, tmp_binds=tuple(tmp_binds),
                  tmp_hides=tuple(tmp_hides))


def _cover(libc, target: str) -> None:
    """Cover a file with /dev/null, a folder with an empty read-only tmpfs."""
    if os.path.isdir(target):
        _mount(libc, "tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY, "mode=0555,size=4k")
    else:
        _mount(libc, "/dev/null", target, None, MS_BIND)


def _can(st: os.stat_result, uid: int, bits: int) -> bool:
    shift = 6 if st.st_uid == uid else (3 if st.st_gid == uid else 0)
    return (st.st_mode >> shift) & bits == bits


def hidden_ancestor(path: str, uid: int) -> str | None:
    """The topmost directory on the way to `path` that `uid` cannot enter (or read, for `path` itself), or None."""
    parts = os.path.abspath(path).split(os.sep)
    for i in range(2, len(parts) + 1):
        d = os.sep.join(parts[:i])
        try:
            st = os.stat(d)
        except OSError:
            return None
        last = i == len(parts)
        need = (0o5 if stat.S_ISDIR(st.st_mode) else 0o4) if last else 0o1
        if not _can(st, uid, need):
            return d
    return None


def mirror_stdlib(uid: int, base: str) -> Layout:
    """Host filesystem; world-readable copies of the standard-library directories `uid` cannot read."""
    mapping = {}
    for p in import_paths():
        if hidden_ancestor(p, uid) is None or "site-packages" in p or "dist-packages" in p or not os.path.isdir(p):
            continue
        key = hashlib.sha256(f"{p}|{sys.version}".encode()).hexdigest()[:16]
        dest = os.path.join(tempfile.gettempdir(), f"selfimprove-stdlib-{os.geteuid()}-{key}")
        if _foreign(dest):  # someone else made the shared copy's folder (a program could, in /tmp): a private copy instead
            dest = tempfile.mkdtemp(prefix="selfimprove-stdlib-own-", dir=base)
            os.chmod(dest, 0o755)
            os.rmdir(dest)
        if not _trusted_copy(dest):
            tmp = tempfile.mkdtemp(prefix="selfimprove-stdlib-tmp-")
            shutil.copytree(p, os.path.join(tmp, "lib"), ignore=shutil.ignore_patterns("site-packages", "__pycache__", "test", "tests", "idlelib"))
            os.chmod(tmp, 0o755)
            try:
                os.rename(tmp, dest)
            except OSError:  # another zygote finished first
                shutil.rmtree(tmp, ignore_errors=True)
            if not _trusted_copy(dest):
                raise SandboxSetupError(f"cannot make a trusted readable copy of {p} at {dest}")
        mapping[p] = os.path.join(dest, "lib")
    path = list(sys.path)
    for p, q in mapping.items():
        path = [q + e[len(p):] if e == p or e.startswith(p + os.sep) else e for e in path]
    return Layout({"mode": "mirror", "copied": sorted(mapping)}, None, base, path if mapping else None)


def _foreign(dest: str) -> bool:
    try:
        st = os.lstat(dest)
    except OSError:
        return False
    return not (stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o022)


def _trusted_copy(dest: str) -> bool:
    try:
        st = os.lstat(dest)
    except OSError:
        return False
    if not (stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o022):
        raise SandboxSetupError(f"{dest} exists but is not a directory owned by this user and writable by it alone")
    return os.path.isdir(os.path.join(dest, "lib"))


def probe(layout: Layout, uid: int | None) -> str | None:
    """Import modules from disk in a child set up as programs will be (a run prepared); the error text, or None."""
    _, _, made = layout.prepare_run(uid, uid)
    try:
        return _probe(layout, uid)
    finally:
        layout.release(made)


def _probe(layout: Layout, uid: int | None) -> str | None:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            layout.enter()
            if uid is not None:
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
            failed = []
            for name in PROBE:
                try:
                    __import__(name)
                except Exception as e:
                    failed.append(f"{name}: {type(e).__name__}: {e}")
            os.write(w, "\n".join(failed[:3]).encode())
        finally:
            os._exit(0)
    os.close(w)
    out = b""
    while chunk := os.read(r, 65536):
        out += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return out.decode(errors="replace") or None


def setup(libc, mode: str, uid: int | None, hide: list[str], base: str) -> Layout:
    """Apply `mode` (see the module docstring) and probe it; `uid` is the children's uid when it differs from ours."""
    errors = []
    layout = None
    if mode in ("auto", "jail"):
        try:
            layout = build_jail(libc, hide)
        except OSError as e:
            errors.append(f"no jail root ({e})")
            if mode == "jail":
                raise SandboxSetupError(f"filesystem mode jail: {errors[0]}; needs mount namespaces (root, or user namespaces)") from None
    if layout is None and mode in ("auto", "mirror"):
        if uid is None and mode == "auto":
            raise SandboxSetupError(
                f"{errors[0]}: as a non-root user the programs would run with your uid on your files. Allow unprivileged user "
                "namespaces (sysctl kernel.unprivileged_userns_clone=1), run as root, or accept the host filesystem explicitly "
                "(task.options.filesystem: host)")
        layout = mirror_stdlib(uid, base) if uid is not None else Layout({"mode": "host"}, None, base)
    if layout is None:
        layout = Layout({"mode": "host"}, None, base)
    if errors:
        layout.info["note"] = "; ".join(errors)
    if layout.root is None and hide:
        readable = [h for h in hide if os.path.exists(h) and (uid is None or hidden_ancestor(h, uid) is None)]
        if readable and layout.info["mode"] == "mirror":
            raise SandboxSetupError(
                f"filesystem mode mirror cannot hide {readable[0]} (it holds a benchmark's solutions), which uid {uid} can read: "
                f"{'; '.join(errors) + '. ' if errors else ''}allow mount namespaces (run as root with CAP_SYS_ADMIN, e.g. docker "
                "--cap-add SYS_ADMIN, for the jail), make the file unreadable to other users, or accept it explicitly "
                "(task.options.filesystem: host)")
        layout.info["hidden"] = "not enforced: the host's files as they are" if readable else []
    failure = probe(layout, uid)
    if failure:
        hidden = sorted({h for p in import_paths() if uid is not None and (h := hidden_ancestor(p, uid))})
        raise SandboxSetupError(
            f"programs cannot import the standard library of {sys.executable} (filesystem mode {layout.info['mode']}"
            f"{', unreadable for uid %d: %s' % (uid, ', '.join(hidden)) if hidden else ''}): {failure}. "
            "Use filesystem mode auto/jail or mirror, or install Python in a world-readable directory."
        )
    layout.info["python"] = sys.executable
    return layout
