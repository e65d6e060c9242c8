"""A memory and pids cgroup for each sandbox run: one limit over all of a program's processes, threads and tmpfs pages.

Per-process limits (RLIMIT_AS) do not add up: four processes may each hold just under the limit, and pages a program
writes to its tmpfs count against none of them. A cgroup does. cgroup v2 is used where this process's cgroup already
delegates the `memory` and `pids` controllers to children (its `cgroup.subtree_control` lists them, or accepts them);
else the cgroup v1 `memory` and `pids` hierarchies, where they are mounted and writable (root). Otherwise no cgroup
applies, and `info` says why (the isolation report shows it). Standard library only: the zygote imports it.

A zygote runs one program at a time, and every process of a run is gone before the next starts. So the zygote makes
one run cgroup and moves itself into it: each run's processes (its reaper, the program's processes and threads, the
judge) are born inside, with no move per run (writing a pid into a v1 cgroup waits for an RCU grace period: about a
millisecond per run). The limit is the run's memory plus an allowance for the zygote and the judge; the zygote makes
itself exempt from the OOM killer and the program's processes its first choice, and OOM kills are counted per run.
"""

import os

V1_CONTROLLERS = ("memory", "pids")
ALLOWANCE = 256 << 20  # bytes beyond the program's memory limit: the zygote and the judge live in the run cgroup too
EXTRA_PIDS = 3  # the zygote, the reaper and the judge


def _mountinfo():
    """(mount root, mount point, fstype, super options) per line of /proc/self/mountinfo."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, tail = left.split(), right.split()
            if len(fields) >= 5 and len(tail) >= 3:
                yield fields[3], fields[4], tail[0], tail[2]


def _own_cgroups() -> dict:
    """Controller (or '' for v2) -> this process's cgroup path in that hierarchy, from /proc/self/cgroup."""
    out = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for c in controllers.split(",") if controllers else [""]:
                out[c] = path
    return out


def _join(mount_point: str, mount_root: str, path: str) -> str | None:
    """The directory of cgroup `path` under a mount of the hierarchy whose root is `mount_root`."""
    if mount_root != "/" and not (path == mount_root or path.startswith(mount_root + "/")):
        return None
    rel = path[len(mount_root):] if mount_root != "/" else path
    return mount_point.rstrip("/") + "/" + rel.strip("/") if rel.strip("/") else mount_point


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _counter(text: str, key: str) -> int:
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == key:
            return int(parts[1])
    return 0


class RunCgroups:
    """Creates, per run, cgroups with the run's memory and pids limits; the run's first process joins them."""

    def __init__(self, tag: str):
        self.tag, self.version, self.parents, self.info = tag, None, {}, {"applied": False}
        self.run_dirs: list[str] = []
        self.limits = None
        own = _own_cgroups()
        mounts = list(_mountinfo())
        reasons = []
        try:
            v2 = self._v2_parent(own, mounts)
            if v2:
                self.version, self.parents = 2, {"": v2}
        except OSError as e:
            reasons.append(f"cgroup v2: {e.strerror or e}")
        except ValueError as e:
            reasons.append(f"cgroup v2: {e}")
        if self.version is None:
            try:
                parents = self._v1_parents(own, mounts)
                if parents:
                    self.version, self.parents = 1, parents
            except OSError as e:
                reasons.append(f"cgroup v1: {e.strerror or e}")
            except ValueError as e:
                reasons.append(f"cgroup v1: {e}")
        if self.version is None:
            self.info = {"applied": False, "reason": "; ".join(reasons) or "no cgroup file system"}
        else:
            self.info = {"applied": True, "version": self.version, "under": sorted(self.parents.values())}

    def _v2_parent(self, own: dict, mounts: list) -> str | None:
        if "" not in own:
            return None
        for root, point, fstype, _ in mounts:
            if fstype != "cgroup2":
                continue
            parent = _join(point, root, own[""])
            if parent is None or not os.path.isdir(parent):
                continue
            available = _read(parent + "/cgroup.controllers").split()
            missing = [c for c in V1_CONTROLLERS if c not in available]
            if missing:
                raise ValueError(f"{parent} has no {' or '.join(missing)} controller")
            enabled = _read(parent + "/cgroup.subtree_control").split()
            if any(c not in enabled for c in V1_CONTROLLERS):
                # refused (EBUSY) when the parent holds processes itself: cgroup v2 delegates only from inner nodes
                _write(parent + "/cgroup.subtree_control", " ".join("+" + c for c in V1_CONTROLLERS))
            base = f"{parent}/selfimprove-{self.tag}"
            os.mkdir(base)
            try:
                _write(base + "/cgroup.subtree_control", " ".join("+" + c for c in V1_CONTROLLERS))
            except OSError:
                self.remove([base])
                raise
            return base
        return None

    def _v1_parents(self, own: dict, mounts: list) -> dict | None:
        parents: dict[str, str] = {}
        try:
            for controller in V1_CONTROLLERS:
                if controller not in own:
                    raise ValueError(f"this process is in no {controller} cgroup")
                parent = next((d for r, p, fstype, opts in mounts if fstype == "cgroup" and controller in opts.split(",")
                               and (d := _join(p, r, own[controller])) is not None and os.path.isdir(d)), None)
                if parent is None:
                    raise ValueError(f"no {controller} hierarchy mounted")
                base = f"{parent}/selfimprove-{self.tag}"
                os.mkdir(base)
                parents[controller] = base
        except (OSError, ValueError):
            self.remove(list(parents.values()))
            raise
        return parents

    def enter(self, memory_bytes: int, pids: int) -> list[str]:
        """The run cgroup's directories, with the run's limits (plus the zygote's allowance); the calling process (the
        zygote) is moved into it on first use. Empty when no cgroup applies."""
        if self.version is None:
            return []
        if self.run_dirs and self.limits == (memory_bytes, pids):
            return self.run_dirs
        made = list(self.run_dirs)
        try:
            if not made:
                for base in self.parents.values():
                    os.mkdir(base + "/run")
                    made.append(base + "/run")
            for controller, d in zip(self.parents, made):
                if self.version == 2:
                    _write(d + "/memory.max", str(memory_bytes + ALLOWANCE))
                    if os.path.exists(d + "/memory.swap.max"):
                        _write(d + "/memory.swap.max", "0")
                    _write(d + "/memory.oom.group", "1")
                    _write(d + "/pids.max", str(pids + EXTRA_PIDS))
                elif controller == "memory":
                    # memory+swap may never be below memory: raise it first, lower it last
                    files = ["memory.limit_in_bytes"] + (["memory.memsw.limit_in_bytes"] if os.path.exists(d + "/memory.memsw.limit_in_bytes") else [])
                    raising = memory_bytes + ALLOWANCE >= int(_read(d + "/memory.limit_in_bytes"))
                    for name in (reversed(files) if raising else files):
                        _write(f"{d}/{name}", str(memory_bytes + ALLOWANCE))
                else:
                    _write(d + "/pids.max", str(pids + EXTRA_PIDS))
            if not self.run_dirs:
                try:  # the OOM killer takes the program's processes (they ask to be first), never the zygote
                    _write("/proc/self/oom_score_adj", "-1000")
                except OSError:  # without CAP_SYS_RESOURCE: the program's processes are still the OOM killer's first choice
                    pass
                for d in made:
                    _write(d + "/cgroup.procs", str(os.getpid()))
        except OSError:
            if not self.run_dirs:
                self.remove(made)
            raise
        self.run_dirs, self.limits = made, (memory_bytes, pids)
        return made

    def oom_kills(self, dirs: list[str]) -> int:
        """Processes the memory limit has killed in these cgroups so far (compare before and after a run)."""
        for d in dirs:
            try:
                if self.version == 2:
                    return _counter(_read(d + "/memory.events"), "oom_kill")
                if os.path.exists(d + "/memory.oom_control"):
                    return _counter(_read(d + "/memory.oom_control"), "oom_kill")
            except OSError:
                return 0
        return 0

    @staticmethod
    def remove(dirs: list[str]) -> None:
        for d in reversed(dirs):
            try:
                os.rmdir(d)
            except OSError:
                pass

    def close(self) -> None:
        """Leave the run cgroup (back to where the zygote started) and remove this zygote's cgroups."""
        for controller in list(self.parents)[: len(self.run_dirs)]:
            try:
                _write(self.parents[controller].rsplit("/", 1)[0] + "/cgroup.procs", str(os.getpid()))
            except OSError:
                pass
        self.remove(self.run_dirs)
        self.remove(list(self.parents.values()))
