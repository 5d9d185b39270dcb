"""Machine profiles: ``profiles/<machine>.toml``, the batch system of a machine as data.

A profile names its scheduler (``pbs``, ``slurm`` or ``local``), the environment script that
loads its modules (``profiles/<machine>.sh``), the directives of its batch scripts, its launcher
and the rank layouts (``gpu``: one rank per GPU or GPU tile with the centre's binding; ``cpu``:
CPU ranks for the NumPy backend), its queues and their limits, and the node and network figures
of the performance model, each with its public source.  The tables (see ``profiles/local.toml``
and ``profiles/README.md``)::

    [machine]     name, description, status (tested | untested), scheduler, environment, nodes,
                  cupy (whether CuPy runs on its GPUs; default true), sources
    [submit]      command (qsub | sbatch | ""), account_required, directives (one per line of
                  '#PBS' / '#SBATCH', with {account} {queue} {name} {nodes} {ranks}
                  {ranks_per_node} {threads} {walltime} {log}), default_queue, stop_margin_s
    [launcher]    command (mpiexec | srun | mpirun)
    [layouts.L]   ranks_per_node, threads_per_rank, ranks_per_gpu (gpu), args, wrapper, env, source
    [queues.Q]    min_nodes, max_nodes, max_walltime, or bins = [[min, max, walltime], ...]; source;
                  partition (what {queue} becomes, e.g. a Slurm QOS on a partition) and
                  extra_directives (added when this queue is chosen: ["-q debug"])
    [filesystems] informational paths
    [figures.F]   value, unit, per, source, note

Profiles are found in ``$LATTICE_HPC_PROFILES`` or else the ``profiles/`` folder of the
checkout; ``--machine`` also takes the path of a ``.toml`` file.
"""

from __future__ import annotations

import os
import re
import tomllib

from ..errors import ConfigError

SCHEDULERS = ("pbs", "slurm", "local")
_REQUIRED = {
    "machine": ("name", "description", "status", "scheduler", "environment", "nodes"),
    "submit": ("command", "account_required", "directives", "default_queue", "stop_margin_s"),
    "launcher": ("command",),
}
_LAYOUT_KEYS = ("ranks_per_node", "threads_per_rank", "args", "wrapper", "env")


def profile_dir() -> str:
    """The folder of the profiles: ``$LATTICE_HPC_PROFILES`` or the checkout's ``profiles/``."""
    from ..switches import get

    env = get("LATTICE_HPC_PROFILES")
    if env:
        return env
    return os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))), "profiles")


def available() -> list[str]:
    """Names of the profiles in :func:`profile_dir`."""
    try:
        return sorted(n[:-5] for n in os.listdir(profile_dir()) if n.endswith(".toml"))
    except OSError:
        return []


def parse_walltime(text: str, what: str = "walltime") -> int:
    """Seconds of ``[D-]HH:MM:SS``, ``HH:MM:SS``, ``MM:SS`` or ``N`` with a unit ``s``, ``m``,
    ``h`` (``90m``, ``2h``); anything else is refused with a message naming ``what``."""
    t = str(text).strip()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smh])", t)
    if m:
        return int(round(float(m.group(1)) * {"s": 1, "m": 60, "h": 3600}[m.group(2)]))
    for pattern, order in ((r"(\d+)-(\d+):(\d\d):(\d\d)", "dhms"), (r"(\d+):(\d\d):(\d\d)", "hms"),
                           (r"(\d+):(\d\d)", "ms")):
        m = re.fullmatch(pattern, t)
        if m:
            v = dict(zip(order, map(int, m.groups())))
            if v["s"] < 60 and ("h" not in v or v["m"] < 60):  # MM:SS may have any minutes
                return ((v.get("d", 0) * 24 + v.get("h", 0)) * 60 + v.get("m", 0)) * 60 + v["s"]
    raise ConfigError(f"{what} = {text!r}: expected HH:MM:SS, D-HH:MM:SS, MM:SS or a number with "
                      "a unit (45s, 90m, 2h)")


def format_walltime(seconds: int) -> str:
    """``HH:MM:SS`` (hours may exceed 24), the form both PBS and Slurm read."""
    h, rest = divmod(int(seconds), 3600)
    return f"{h:02d}:{rest // 60:02d}:{rest % 60:02d}"


class Profile:
    """A validated machine profile (the parsed TOML is ``self.data``)."""

    def __init__(self, data: dict, path: str):
        self.data, self.path = data, path
        self._check()

    @classmethod
    def load(cls, machine: str) -> Profile:
        """The profile ``machine`` (a name in :func:`profile_dir`, or a path to a ``.toml``)."""
        if machine.endswith(".toml") or os.sep in machine:
            path = machine
        else:
            path = os.path.join(profile_dir(), f"{machine}.toml")
            if not os.path.exists(path):
                raise ConfigError(f"--machine {machine!r}: unknown machine; profiles in "
                                  f"{profile_dir()}: {', '.join(available()) or 'none'}")
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"--machine {machine}: no such profile file") from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the profile ({exc.strerror})") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
        return cls(data, path)

    def _check(self) -> None:
        d = self.data
        for table, keys in _REQUIRED.items():
            if not isinstance(d.get(table), dict):
                raise ConfigError(f"{self.path}: missing table [{table}]")
            for k in keys:
                if k not in d[table]:
                    raise ConfigError(f"{self.path}: [{table}] needs the key {k!r}")
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(f"{self.path}: machine.scheduler = {self.scheduler!r}; expected one "
                              f"of {', '.join(SCHEDULERS)}")
        if not d.get("layouts"):
            raise ConfigError(f"{self.path}: needs at least one [layouts.<name>] table")
        for name, lay in d["layouts"].items():
            for k in _LAYOUT_KEYS:
                if k not in lay:
                    raise ConfigError(f"{self.path}: [layouts.{name}] needs the key {k!r}")
            if not isinstance(lay["ranks_per_node"], int) or lay["ranks_per_node"] < 1:
                raise ConfigError(f"{self.path}: layouts.{name}.ranks_per_node must be a "
                                  "positive integer")
        if not d.get("queues"):
            raise ConfigError(f"{self.path}: needs at least one [queues.<name>] table")
        for name, q in d["queues"].items():
            for lo, hi, wall in self.queue_bins(name):
                parse_walltime(wall, f"{self.path}: queues.{name} walltime")
        if self.default_queue not in d["queues"]:
            raise ConfigError(f"{self.path}: submit.default_queue = {self.default_queue!r} is "
                              f"not one of its queues ({', '.join(d['queues'])})")

    # -- accessors --------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.data["machine"]["name"]

    @property
    def scheduler(self) -> str:
        return self.data["machine"]["scheduler"]

    @property
    def default_queue(self) -> str:
        return self.data["submit"]["default_queue"]

    @property
    def cupy(self) -> bool:
        return bool(self.data["machine"].get("cupy", True))

    def layout(self, name: str) -> dict:
        lays = self.data["layouts"]
        if name not in lays:
            raise ConfigError(f"--layout {name}: machine {self.name} has the layouts "
                              f"{', '.join(lays)}")
        return lays[name]

    def queue_bins(self, queue: str) -> list[tuple[int, int, str]]:
        """``[(min_nodes, max_nodes, max_walltime)]`` of a queue (one entry unless it has bins)."""
        q = self.data["queues"][queue]
        try:
            if "bins" in q:
                return [(int(a), int(b), str(w)) for a, b, w in q["bins"]]
            return [(int(q["min_nodes"]), int(q["max_nodes"]), str(q["max_walltime"]))]
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{self.path}: [queues.{queue}] needs min_nodes, max_nodes and "
                              f"max_walltime, or bins = [[min, max, walltime], ...] ({exc})") from None

    def check_request(self, queue: str, nodes: int, walltime_s: int) -> None:
        """Refuse a node count or wall-clock limit that queue ``queue`` does not take."""
        if queue not in self.data["queues"]:
            raise ConfigError(f"--queue {queue}: machine {self.name} has the queues "
                              f"{', '.join(self.data['queues'])}")
        bins = self.queue_bins(queue)
        fit = [(lo, hi, w) for lo, hi, w in bins if lo <= nodes <= hi]
        if not fit:
            span = ", ".join(f"{lo}-{hi}" for lo, hi, _ in bins)
            raise ConfigError(f"--nodes {nodes}: queue {queue} on {self.name} takes {span} nodes")
        limit = parse_walltime(fit[0][2])
        if walltime_s > limit:
            raise ConfigError(f"--walltime {format_walltime(walltime_s)} exceeds the limit "
                              f"{format_walltime(limit)} of queue {queue} on {self.name} at "
                              f"{nodes} node{'s' * (nodes > 1)}")
        total = int(self.data["machine"]["nodes"])
        if nodes > total:
            raise ConfigError(f"--nodes {nodes}: {self.name} has {total} nodes")

    def figure(self, name: str) -> float:
        """The value of ``[figures.<name>]``."""
        f = self.data.get("figures", {}).get(name)
        if f is None:
            raise ConfigError(f"{self.path}: no [figures.{name}]")
        return float(f["value"])
