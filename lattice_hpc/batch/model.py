"""A performance model of the kernels, calibrated on scaling studies, extrapolated with profiles.

    lattice-hpc model --calibration DIR [DIR ...] [--kernel dslash] [--machines aurora,...]
                      [--out DIR] [--json]

**The model** (per rank; ``V`` the local volume, ``L_mu`` the local extents, ``P`` the
partitioned directions, ``b`` bytes per real):

- memory: ``t_mem = kappa_n (t_0 + V B_site / (eta B_copy))``, with QUDA's byte model
  ``B_site`` (2880 bytes per site for the Wilson hop in double, 1440 in single; the figure the
  benchmarks use), ``B_copy`` the copy bandwidth per rank, ``eta`` the kernel's fraction of it
  and ``t_0`` a fixed cost per call, fitted exactly through the single-rank hops of two local
  volumes (with one volume, ``t_0 = 0`` and ``eta = V_1 B_site / (t_1 B_copy,1)``);
  ``kappa_n`` is the node-sharing factor at ``n`` ranks: the time of the single-rank hop of the
  local lattice when all ``n`` ranks run it at once (no communication; ``concurrent_GFLOPs`` of
  ``bench dslash``) over the modelled single-rank time.  It captures what the copy bandwidth
  does not: cores that share caches or a clock budget (turbo) slow a compute-bound kernel when
  all of them work.  Where no concurrent measurement exists at ``n`` ranks, ``kappa_n = 1`` and
  ``B_copy`` is the copy bandwidth per rank with all ranks copying at once;
- network (alpha-beta): a face of ``V / L_mu`` sites carries a half spinor (12 reals);
  ``t_net = 2 |P| alpha + 2 sum_mu (V / L_mu) 12 b / beta``; ``alpha`` and ``beta`` are fitted
  exactly through two halo exchanges of the study (smallest and largest message volume);
- overlap: ``t = max(t_mem, t_net) + (1 - omega) min(t_mem, t_net)``; ``omega = 1`` where the
  faces travel while the bulk computes (GPUs with GPU-aware MPI, the extrapolations), ``omega =
  0`` for CPU ranks, where MPI progresses only inside its calls (the calibration machine);
- kernels: ``halo`` = ``t_net`` of the link field (against the measured exchange of the
  partitioned directions, ``network_seconds``) (4 links x 18 reals per face site, full halo);
  ``dslash`` = the above; ``cg`` (a CGNE iteration of the even/odd operator) = its single-rank
  time scaled by ``kappa_n V / V_1`` (or ``V B_copy,1 / (V_1 B_copy)``) + the face traffic of two
  hops + two global reductions (``2 alpha ceil(log2 n)``); ``hmc`` (a trajectory) = its
  single-rank non-Dirac time scaled the same way + the alpha-beta time of the halo exchanges of
  links and forces that the trajectory made (their message and byte counts, recorded by the job)
  + its Dirac-operator time (``seconds.dslash`` of its record) in units of the modelled
  single-rank hop, each unit then costing a modelled hop.

**Calibration and validation.**  The single-rank point of each study (the dslash ones of two
volumes, and the two halo points) are calibration points: the model reproduces them exactly.  Every other measured point is a
prediction; its relative error is reported.  (If the two halo points give a negative latency or
bandwidth, a through-origin fit is used instead and both are reported as predictions.)  Studies
of different precisions are not mixed.

**Extrapolation.**  Only the model's form carries over from the calibration machine (a CPU): the
figures come from the profiles and the stated assumptions, not from the CPU's measurements.  With
the profiles' figures: ``B_copy`` = ``copy_efficiency`` x peak HBM
bandwidth per GPU over ranks per GPU, ``eta`` = ``gpu_kernel_efficiency``, ``alpha`` = the
profile's MPI latency, ``beta`` = NIC bandwidth x NICs per node / ranks per node (every rank
sends off-node at once: an upper bound of the time, as no traffic is assumed to stay in the
node).  Strong scaling of 64^3 x 128 and weak scaling at 32^4 per GPU (on Aurora, whose ranks
are GPU tiles, 32^3 x 16 per tile), over powers of two of nodes up to the full machine.  Each
assumption is printed with the result.
"""

from __future__ import annotations

import json
import math
import os

from ..errors import ConfigError
from .profiles import Profile
from .scaling import grid_for

BYTES_PER_SITE = {"double": 2880, "single": 1440}  # the Wilson hop, QUDA's model
FLOPS_PER_SITE = 1320
HALF_SPINOR_REALS = 12
LINK_FACE_REALS = 4 * 18  # a full halo of the links: every direction's links at a face site
ITEMSIZE = {"double": 8, "single": 4}
MODELLED = ("halo", "dslash", "cg", "hmc")

ASSUMPTIONS = {
    "copy_efficiency": (0.85, "a STREAM-like copy reaches 85% of the peak HBM bandwidth "
                              "(typical of A100, MI250X and PVC measurements; not measured here)"),
    "gpu_kernel_efficiency": (0.6, "the hop reaches 60% of the copy bandwidth on a GPU (QUDA-class "
                                   "Wilson kernels reach 60-80%; ours has not run on a GPU yet)"),
    "overlap_gpu": (1.0, "faces travel while the bulk computes (GPU-aware MPI)"),
    "overlap_cpu": (0.0, "CPU ranks: MPI progresses only inside its calls, so no overlap"),
    "off_node": (1.0, "all face traffic leaves the node (an upper bound of the network time)"),
}


def load_study(path: str) -> dict:
    """A scaling study's ``table.json`` (with the raw points) from its folder."""
    try:
        with open(os.path.join(path, "table.json")) as fh:
            table = json.load(fh)
        for p in table["points"]:
            with open(os.path.join(path, "points", f"{table['kernel']}_{p['ranks']}.json")) as fh:
                p["raw"] = json.load(fh).get("raw", {})
    except FileNotFoundError as exc:
        raise ConfigError(f"--calibration {path}: not a scaling results folder ({exc.filename} "
                          "is missing; `lattice-hpc scaling` writes one)") from None
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"--calibration {path}: cannot read the study ({exc})") from None
    return table


def _local(p) -> list[int]:
    return p.get("local_dims") or [d // g for d, g in zip(p["dims"], p["grid"])]


def faces(local_dims, grid, reals: int, itemsize: int) -> tuple[int, float]:
    """``(messages, bytes)`` a rank sends in one exchange of faces of ``reals`` per site."""
    vol = math.prod(local_dims)
    msgs, nbytes = 0, 0.0
    for L, g in zip(local_dims, grid):
        if g > 1:
            msgs += 2
            nbytes += 2 * vol / L * reals * itemsize
    return msgs, nbytes


class Model:
    """The model of one machine: ``copy`` bandwidth per rank (a function of the rank count),
    ``alpha`` (s), ``beta`` (B/s), the overlap ``omega`` and the per-kernel calibration."""

    def __init__(self, copy, alpha: float, beta: float, omega: float, precision: str = "double"):
        self.copy, self.alpha, self.beta, self.omega = copy, alpha, beta, omega
        self.precision = precision
        self.cal: dict[str, dict] = {}
        #: node-sharing factor per rank count (measured), with the copy bandwidth it refers to
        self.kappa: dict[int, float] = {}
        self.copy1: float | None = None

    def compute(self, local_dims, ranks: int, copy: float | None = None) -> float:
        """The hop's on-rank time: ``kappa_n (t_0 + V B_site / (eta B_copy))``."""
        c = self.cal["dslash"]
        if ranks in self.kappa:
            kappa, bw = self.kappa[ranks], self.copy1
        else:
            kappa, bw = 1.0, copy or self.copy(ranks)
        vol = math.prod(local_dims)
        return kappa * (c.get("t0", 0.0) + vol * BYTES_PER_SITE[self.precision] / (c["eta"] * bw))

    def volume_scale(self, c: dict, local_dims, ranks: int, copy: float) -> float:
        """A kernel's single-rank time (calibration ``c``) scaled to ``local_dims`` at ``ranks``."""
        vol = math.prod(local_dims)
        if ranks in self.kappa:
            return self.kappa[ranks] * vol / c["volume"]
        return vol * c["copy"] / (c["volume"] * copy)

    def net(self, local_dims, grid, reals: int) -> float:
        msgs, nbytes = faces(local_dims, grid, reals, ITEMSIZE[self.precision])
        return msgs * self.alpha + (nbytes / self.beta if nbytes else 0.0)

    def combine(self, t_mem: float, t_net: float) -> float:
        return max(t_mem, t_net) + (1.0 - self.omega) * min(t_mem, t_net)

    def hop(self, local_dims, grid, ranks: int, copy: float | None = None) -> float:
        return self.combine(self.compute(local_dims, ranks, copy),
                            self.net(local_dims, grid, HALF_SPINOR_REALS))

    def predict(self, kernel: str, local_dims, grid, ranks: int, counts=None,
                copy: float | None = None, ref: dict | None = None) -> float:
        """Seconds of one ``kernel`` operation on ``ranks`` ranks with these local extents
        (``counts``: the ``(messages, bytes)`` of a measured halo exchange; ``copy``: the copy
        bandwidth per rank measured with the point, else the model's at that rank count; ``ref``:
        the single-rank calibration of the cg or hmc study the point belongs to, else the
        first study's)."""
        if kernel not in self.cal:
            raise ConfigError(f"the model has no measurement of kernel {kernel!r} (it has "
                              f"{', '.join(sorted(self.cal)) or 'none'}): run `lattice-hpc scaling "
                              f"... --kernel {kernel}` and pass its folder to --calibration")
        c = ref or self.cal[kernel]
        if kernel == "halo":
            if counts is not None:  # the messages the benchmark sent (counts, not timings)
                return counts[0] * self.alpha + counts[1] / self.beta
            return self.net(local_dims, grid, LINK_FACE_REALS)
        copy = copy or self.copy(ranks)
        if kernel == "dslash":
            return self.hop(local_dims, grid, ranks, copy)
        scale = self.volume_scale(c, local_dims, ranks, copy)
        red = 2 * self.alpha * math.ceil(math.log2(ranks)) if ranks > 1 else 0.0
        if kernel == "cg":
            return self.combine(c["seconds"] * scale, 2 * self.net(local_dims, grid, HALF_SPINOR_REALS)) + red
        if kernel == "hmc":  # counts: the (messages, bytes) of the trajectory's other halos
            halos = counts[0] * self.alpha + counts[1] / self.beta if counts else 0.0
            return (c["other_seconds"] * scale + halos
                    + c["hops"] * self.hop(local_dims, grid, ranks, copy))
        raise ConfigError(f"no model for kernel {kernel!r}: the model covers {', '.join(MODELLED)}")


def calibrate(studies: list[dict]) -> tuple[Model, list[dict]]:
    """The model of the machine the studies ran on, and the list of its calibration points."""
    if not studies:
        raise ConfigError("--calibration: give at least one scaling results folder")
    by_kernel = {}
    for t in studies:
        if t["kernel"] not in MODELLED:
            raise ConfigError(f"no model for kernel {t['kernel']!r} (study of {t['machine']}): the "
                              f"model covers {', '.join(MODELLED)}")
        by_kernel.setdefault(t["kernel"], []).append(t)
    precision = studies[0]["precision"]
    mixed = sorted({t["precision"] for t in studies})
    if len(mixed) > 1:
        raise ConfigError(f"--calibration: the studies mix precisions ({', '.join(mixed)}); "
                          "calibrate on studies of one precision")
    copies = {}
    for t in studies:
        for p in t["points"]:
            copies.setdefault(p["ranks"], []).append(p["copy_GBps_per_rank"] * 1e9)
    copy_at = {r: sum(v) / len(v) for r, v in copies.items()}

    def copy(r):
        if r in copy_at:
            return copy_at[r]
        known = sorted(copy_at)
        return copy_at[min(known, key=lambda k: abs(k - r))]

    # alpha, beta through two halo exchanges (the smallest and the largest message volume)
    halo_all = [p for t in by_kernel.get("halo", []) for p in t["points"] if p["ranks"] > 1]
    halo_pts = [p for p in halo_all if not p.get("oversubscribed")]
    if len(halo_pts) < 2:
        halo_pts = halo_all
    fallback = False
    if len(halo_pts) >= 2 and len({_counts(p) for p in halo_pts}) >= 2:
        vol = _counts
        a = min(halo_pts, key=lambda p: vol(p)[1])
        b = max((p for p in halo_pts if vol(p) != vol(a)), key=lambda p: vol(p)[1])
        (m1, n1), (m2, n2) = vol(a), vol(b)
        t1, t2 = _net_seconds(a), _net_seconds(b)
        det = m1 * n2 - m2 * n1
        if det == 0 or m1 == m2 and n1 == n2:
            raise ConfigError("the halo study needs two points with different message counts or "
                              "sizes to fit the network's latency and bandwidth")
        alpha = (t1 * n2 - t2 * n1) / det
        inv_beta = (m1 * t2 - m2 * t1) / det
        if alpha <= 0 or inv_beta <= 0:  # fall back: a through-origin bandwidth, latency from the small one
            fallback = True
            inv_beta = t2 / n2
            alpha = max(1e-7, (t1 - n1 * inv_beta) / m1)
        beta = 1.0 / inv_beta
        halo_cal = [] if fallback else [a, b]
    else:
        raise ConfigError("the model needs halo exchanges of two sizes on several ranks for the "
                          "network's latency and bandwidth: halo studies (`lattice-hpc scaling "
                          "strong --kernel halo --ranks 1,2 --dims ...`) at two lattice sizes")
    model = Model(copy, alpha, beta, ASSUMPTIONS["overlap_cpu"][0], precision)
    model.halo_fit = "through-origin fallback (the exact fit was unphysical)" if fallback else "exact"
    cal_points = [("halo", p) for p in halo_cal]
    model.cal["halo"] = {}
    order = [k for k in ("dslash", "cg", "hmc") if k in by_kernel]
    for kernel in order:
        for i, t in enumerate(by_kernel[kernel]):
            p = min(t["points"], key=lambda q: q["ranks"])
            if p["ranks"] != 1:
                raise ConfigError(f"the {kernel} {t['mode']} study has no single-rank point: the "
                                  "model calibrates its compute part there (add 1 to --ranks)")
            v = math.prod(_local(p))
            c = {"seconds": p["seconds"], "volume": v, "copy": p["copy_GBps_per_rank"] * 1e9}
            if kernel == "dslash":
                if i == 0:
                    c["eta"] = v * BYTES_PER_SITE[precision] / (p["seconds"] * c["copy"])
                    cal_points.append((kernel, p))
                    p2 = _second_volume(by_kernel["dslash"], v)
                    if p2 is not None:  # t = t0 + V B / (eta B_copy) through both (exact)
                        v2, c2 = math.prod(_local(p2)), p2["copy_GBps_per_rank"] * 1e9
                        x1 = v * BYTES_PER_SITE[precision] / c["copy"]
                        x2 = v2 * BYTES_PER_SITE[precision] / c2
                        inv_eta = (p["seconds"] - p2["seconds"]) / (x1 - x2)
                        t0 = p["seconds"] - x1 * inv_eta
                        if inv_eta > 0 and t0 >= 0:
                            c["eta"], c["t0"] = 1.0 / inv_eta, t0
                            cal_points.append((kernel, p2))
                    model.copy1 = c["copy"]
                    model.cal[kernel] = c
                    model.kappa = _node_sharing(model, by_kernel["dslash"])
                continue
            if kernel == "hmc":
                if "dslash" not in model.cal:
                    raise ConfigError("the hmc model needs a dslash study too (its Dirac-operator "
                                      "part)")
                # the trajectory's Dirac time in units of the modelled single-rank hop (half-lattice
                # hops of the even/odd operator count as the fraction of a hop they cost)
                c["dirac_seconds"] = float(p.get("dslash_seconds", 0.0))
                c["other_seconds"] = p["seconds"] - c["dirac_seconds"]
                c["hops"] = c["dirac_seconds"] / model.hop(_local(p), p["grid"], 1, c["copy"])
            # each study's multi-rank points are predicted from its own single-rank point
            t["reference"] = c
            model.cal.setdefault(kernel, c)
            cal_points.append((kernel, p))
    return model, cal_points


def _second_volume(studies, v1):
    """The single-rank dslash point whose local volume is farthest from ``v1`` (or None)."""
    pts = [p for t in studies for p in t["points"]
           if p["ranks"] == 1 and math.prod(_local(p)) != v1]
    return max(pts, key=lambda p: abs(math.prod(_local(p)) - v1), default=None)


def _node_sharing(model: Model, studies) -> dict[int, float]:
    """``kappa_n`` per rank count: the concurrent single-rank hops of the dslash points (their
    ``concurrent_GFLOPs``) over the modelled single-rank time of the same local lattice, the mean
    over the points at that rank count."""
    out = {}
    for t in studies:
        for p in t["points"]:
            r = (p.get("raw") or {}).get("results", [{}])[0]
            if p["ranks"] > 1 and r.get("concurrent_GFLOPs"):
                local = _local(p)
                t_conc = FLOPS_PER_SITE * math.prod(local) / (r["concurrent_GFLOPs"] * 1e9)
                out.setdefault(p["ranks"], []).append(t_conc / model.compute(local, 1, model.copy1))
    return {n: sum(v) / len(v) for n, v in out.items()}


def _net_seconds(p) -> float:
    """The network part of a halo point: the exchange of the partitioned directions only (its
    ``seconds`` are the whole exchange, with the on-rank copies of the other directions)."""
    return p.get("network_seconds", p["seconds"])


def _counts(p) -> tuple[int, float]:
    """``(messages, bytes)`` per rank of a measured halo point."""
    r = p["raw"]["results"][0]
    return int(r["messages"]), float(r["bytes_sent_per_rank"])


def validate(model: Model, studies: list[dict], cal_points) -> list[dict]:
    """Every measured point against the model: calibration points and predictions."""
    cal_ids = {(k, id(p)) for k, p in cal_points}
    out = []
    for t in studies:
        for p in t["points"]:
            if t["kernel"] == "halo" and p["ranks"] == 1:
                continue  # nothing crosses ranks: a local copy, not the network's business
            counts = _counts(p) if t["kernel"] == "halo" else None
            measured = _net_seconds(p) if t["kernel"] == "halo" else p["seconds"]
            if t["kernel"] == "hmc" and p["ranks"] > 1 and "halo_messages" in p:
                counts = (int(p["halo_messages"]), float(p["halo_bytes"]))
            pred = model.predict(t["kernel"], _local(p), p["grid"], p["ranks"], counts,
                                 p["copy_GBps_per_rank"] * 1e9, t.get("reference"))
            out.append({"kernel": t["kernel"], "mode": t["mode"], "ranks": p["ranks"],
                        "dims": p["dims"], "grid": p["grid"], "measured": measured,
                        "model": pred, "error": pred / measured - 1.0,
                        "calibration": (t["kernel"], id(p)) in cal_ids,
                        "oversubscribed": p.get("oversubscribed", False)})
    return out


def machine_model(prof: Profile, precision: str) -> tuple[Model, dict]:
    """The model of a big machine from its profile's figures and the stated assumptions."""
    lay = prof.layout("gpu")
    per_gpu = int(lay.get("ranks_per_gpu", 1))
    bw = prof.figure("gpu_memory_bandwidth") * 1e9 / per_gpu * ASSUMPTIONS["copy_efficiency"][0]
    rpn = lay["ranks_per_node"]
    beta = prof.figure("nic_bandwidth") * 1e9 * prof.figure("nics_per_node") / rpn
    alpha = prof.figure("network_latency") * 1e-6
    m = Model(lambda r: bw, alpha, beta, ASSUMPTIONS["overlap_gpu"][0], precision)
    m.cal = {"dslash": {"eta": ASSUMPTIONS["gpu_kernel_efficiency"][0]}, "halo": {}}
    figures = {"copy_GBps_per_rank": bw / 1e9, "beta_GBps_per_rank": beta / 1e9,
               "alpha_us": alpha * 1e6, "ranks_per_node": rpn, "ranks_per_gpu": per_gpu}
    return m, figures


def extrapolate(prof: Profile, m: Model, mode: str) -> list[dict]:
    """Strong scaling of 64^3 x 128 or weak scaling at 32^4 per rank, nodes 1, 2, 4, ... up to
    the machine, for the hop."""
    from ..geometry.decomposition import resolve_grid

    rpn = prof.layout("gpu")["ranks_per_node"]
    if mode == "strong":  # the most ranks per node (GPUs or tiles used) whose grids divide 64^3 x 128
        rpn = strong_ranks_per_node(prof)
    total = int(prof.data["machine"]["nodes"])
    nodes = [2 ** k for k in range(int(math.log2(total)) + 1)]
    if nodes[-1] != total:
        nodes.append(total)
    rows, base = [], None
    for n in nodes:
        ranks = n * rpn
        if mode == "strong":
            dims = [64, 64, 64, 128]
            try:
                grid = list(resolve_grid(dims, "auto", ranks))
            except Exception:
                continue  # this rank count does not divide 64^3 x 128
            local = [d // g for d, g in zip(dims, grid)]
        else:  # 32^4 per GPU, split over its ranks along t (Aurora: two tiles, 32^3 x 16 each)
            local = [32, 32, 32, 32 // int(prof.layout("gpu").get("ranks_per_gpu", 1))]
            grid = grid_for(ranks, 4)
            dims = [a * g for a, g in zip(local, grid)]
        t = m.hop(local, grid, ranks)
        t_net = m.net(local, grid, HALF_SPINOR_REALS)
        t_mem = math.prod(local) * BYTES_PER_SITE[m.precision] / (m.cal["dslash"]["eta"] * m.copy(ranks))
        row = {"nodes": n, "ranks": ranks, "dims": dims, "grid": grid, "local_dims": local,
               "seconds": t, "memory_seconds": t_mem, "network_seconds": t_net,
               "TFLOPs": FLOPS_PER_SITE * math.prod(dims) / t / 1e12,
               "network_bound": t_net > t_mem}
        if base is None:
            base = row
        if mode == "strong":
            row["speedup"] = base["seconds"] / t
            row["efficiency"] = row["speedup"] * base["ranks"] / ranks
        else:
            row["efficiency"] = base["seconds"] / t
        rows.append(row)
    return rows


def _fits(dims, ranks: int) -> bool:
    from ..geometry.decomposition import resolve_grid

    try:
        resolve_grid(dims, "auto", ranks)
        return True
    except Exception:
        return False


def strong_ranks_per_node(prof: Profile) -> int:
    """Ranks per node of the strong-scaling extrapolation (Aurora's 12 tiles do not divide a
    64^3 x 128 lattice: 8 of them are used)."""
    rpn = prof.layout("gpu")["ranks_per_node"]
    return max(r for r in range(1, rpn + 1) if _fits([64, 64, 64, 128], r))


def run_model(args) -> dict:
    """The ``model`` command."""
    studies = [load_study(d) for d in args.calibration]
    model, cal = calibrate(studies)
    if args.kernel:
        model.predict(args.kernel, [4, 4, 4, 4], [1, 1, 1, 1], 1)  # refuses an unmeasured kernel
    checks = validate(model, studies, cal)
    preds = [c for c in checks if not c["calibration"]]
    out = {"calibration_machine": studies[0]["machine"], "precision": model.precision,
           "calibrated": {"alpha_us": model.alpha * 1e6, "beta_GBps": model.beta / 1e9,
                          "halo_fit": model.halo_fit,
                          "dslash_eta": model.cal.get("dslash", {}).get("eta"),
                          "dslash_t0_us": model.cal.get("dslash", {}).get("t0", 0.0) * 1e6,
                          "node_sharing": {str(k): v for k, v in sorted(model.kappa.items())},
                          "overlap": model.omega},
           "points": checks,
           "max_prediction_error": max((abs(c["error"]) for c in preds), default=None),
           "max_prediction_error_not_oversubscribed": max(
               (abs(c["error"]) for c in preds if not c["oversubscribed"]), default=None),
           "assumptions": {k: {"value": v, "why": w} for k, (v, w) in ASSUMPTIONS.items()},
           "extrapolations": {}}
    if "dslash" in model.cal:
        for name in [m for m in args.machines.split(",") if m]:
            prof = Profile.load(name)
            m, figs = machine_model(prof, model.precision)
            figs["strong_ranks_per_node"] = strong_ranks_per_node(prof)
            out["extrapolations"][name] = {"figures": figs, "strong_64^3x128": extrapolate(prof, m, "strong"),
                                           "weak_32^4_per_gpu": extrapolate(prof, m, "weak")}
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "model.json"), "w") as fh:
            json.dump(out, fh, indent=1)
        with open(os.path.join(args.out, "model.md"), "w") as fh:
            fh.write(markdown(out))
        if out["extrapolations"]:
            plot(out, args.out)
    return out


def markdown(out: dict) -> str:
    c = out["calibrated"]
    lines = [f"# Performance model, calibrated on {out['calibration_machine']} ({out['precision']})", "",
             f"alpha = {c['alpha_us']:.3g} us, beta = {c['beta_GBps']:.3g} GB/s per rank, "
             f"dslash eta = {c['dslash_eta'] if c['dslash_eta'] is None else round(c['dslash_eta'], 3)}"
             f" of the copy bandwidth, t0 = {c.get('dslash_t0_us', 0.0):.3g} us, node sharing "
             f"{', '.join(f'{v:.3f} at {k} ranks' for k, v in c.get('node_sharing', {}).items()) or 'not measured'}"
             f", overlap {c['overlap']}", "",
             "| kernel | mode | ranks | lattice | grid | measured s | model s | error | role |",
             "|---|---|---|---|---|---|---|---|---|"]
    for p in out["points"]:
        lines.append(f"| {p['kernel']} | {p['mode']} | {p['ranks']} | {','.join(map(str, p['dims']))} | "
                     f"{','.join(map(str, p['grid']))} | {p['measured']:.4g} | {p['model']:.4g} | "
                     f"{100 * p['error']:+.1f}% | {'calibration' if p['calibration'] else 'prediction'}"
                     f"{' (oversubscribed)' if p['oversubscribed'] else ''} |")
    if out["max_prediction_error"] is not None:
        lines += ["", f"Largest prediction error: {100 * out['max_prediction_error']:.1f}%"]
    if out.get("max_prediction_error_not_oversubscribed") is not None:
        lines += [f"Largest prediction error of the points that are not oversubscribed: "
                  f"{100 * out['max_prediction_error_not_oversubscribed']:.1f}%"]
    lines += ["", "Assumptions:"] + [f"- {k} = {v['value']}: {v['why']}" for k, v in out["assumptions"].items()]
    for name, ex in out["extrapolations"].items():
        f = ex["figures"]
        lines += ["", f"## {name}: the Wilson hop ({f['ranks_per_node']} ranks per node, "
                      f"{f['strong_ranks_per_node']} in the strong scaling, copy "
                      f"{f['copy_GBps_per_rank']:.0f} GB/s and network {f['beta_GBps_per_rank']:.1f} GB/s "
                      f"per rank, latency {f['alpha_us']} us)"]
        for key in ("strong_64^3x128", "weak_32^4_per_gpu"):
            lines += ["", f"{key}:", "", "| nodes | ranks | grid | local | s per hop | TFLOP/s | efficiency | bound |",
                      "|---|---|---|---|---|---|---|---|"]
            for r in ex[key]:
                lines.append(f"| {r['nodes']} | {r['ranks']} | {','.join(map(str, r['grid']))} | "
                             f"{','.join(map(str, r['local_dims']))} | {r['seconds']:.3g} | "
                             f"{r['TFLOPs']:.4g} | {r['efficiency']:.3f} | "
                             f"{'network' if r['network_bound'] else 'memory'} |")
    return "\n".join(lines) + "\n"


def plot(out: dict, folder: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for i, (name, ex) in enumerate(out["extrapolations"].items()):
        for ax, key in zip(axes, ("strong_64^3x128", "weak_32^4_per_gpu")):
            rows = ex[key]
            ax.plot([r["nodes"] for r in rows], [r["efficiency"] for r in rows], "o-",
                    color=f"C{i}", label=name, ms=3)
            ax.set_xscale("log", base=2)
            ax.set_xlabel("nodes")
            ax.set_ylabel("parallel efficiency")
            ax.set_ylim(0, 1.1)
            ax.set_title(key.replace("_", " "), fontsize=9)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Model: Wilson hop, {out['precision']} precision (assumptions in model.md)", fontsize=9)
    fig.tight_layout()
    for ext in ("png", "pdf"):
        fig.savefig(os.path.join(folder, f"model.{ext}"), dpi=120)
    plt.close(fig)
