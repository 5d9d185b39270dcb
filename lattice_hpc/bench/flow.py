"""``lattice-hpc bench flow``: the cost of a gauge-equivariant flow, measured against itself and HMC.

Three measurements in one run (run it under ``mpirun -n 2`` on this machine):

1. **Weak scaling of the domain-decomposed flow.**  Rank 0 alone trains and samples on
   ``--local-dims``; then every rank together on the lattice ``--local-dims`` times the process
   grid (the same block per rank).  Figures: seconds per training step (batch ``--batch``) and
   proposals per second (forward pass, float64 action and observables), each at 1 and N ranks,
   and ``efficiency = t(1 rank) / t(N ranks)`` (1 is perfect weak scaling).
2. **Memory of a training step.**  The bytes of the tensors autograd saves for the backward pass
   of one training step (the activations: the part of the memory that grows with the lattice),
   counted with ``torch.autograd.graph.saved_tensors_hooks``, for the global lattice of 1. on
   rank 0 alone and per rank when it is split over all ranks: ``ratio`` should be about
   ``1 / ranks``.  On CUDA also ``torch.cuda.max_memory_allocated``.
3. **Cost per independent sample of the topological charge (2D U(1)).**  A flow trained for
   ``--train-steps`` (or loaded from ``--model``) runs an independence Metropolis chain of
   ``--proposals`` proposals; HMC (Omelyan, ``--hmc-steps`` steps per unit trajectory) runs
   ``--trajectories`` trajectories at the same point, on all ranks.  ``tau_int(Q)`` of each chain
   (Gamma method), and ``cost = seconds per step * 2 tau_int``, with and without the training
   time spread over the flow chain's independent samples.  ``hmc_over_flow`` is the ratio of the
   costs (above 1: the flow is cheaper).  ``--cost-masks sweep --cost-kernel ncp --cost-init
   plaquette`` compares the 2D sweep flow started at the one-plaquette map
   (:mod:`lattice_hpc.flows.pretrain`; the start's seconds count as training).
"""

from __future__ import annotations

import time

import numpy as np

from ..analysis import gamma_method
from ..comm import self_comm
from ..geometry import Lattice, parse_dims
from ..groups import get_group
from ..rng import CounterRNG
from .dslash import local_grid
from .timing import time_pairs


def _arch(args, dims, cost=False):
    """The benchmark's architecture; ``cost``: that of the flow-vs-HMC comparison, which may use
    its own mask order, kernel (``--cost-masks``, ``--cost-kernel``)."""
    masks = args.cost_masks if cost else "planes"
    layers = sum(dims) - 2 if masks == "sweep" else args.layers
    return {"group": args.group, "dims": list(dims), "layers": layers,
            "kernel": args.cost_kernel if cost else "spline",
            "bins": args.bins, "hidden": list(args.hidden), "kernel_size": 3,
            "kernel_shape": args.kernel_shape, "masks": masks}


def _setup(args, lat, device, cost=False):
    from ..flows.geometry import FlowLattice
    from ..flows.model import GaugeFlow
    from ..flows.train import Parallel, Trainer

    fl = FlowLattice(lat, device, args.precision)
    flow = GaugeFlow(fl, _arch(args, lat.dims, cost), seed=1)
    par = Parallel(lat.comm, lat.comm, self_comm())
    tr = Trainer(flow, get_group(args.group), args.beta, CounterRNG(1), par, args.batch, 1e-3)
    return fl, flow, tr


def _propose(fl, flow, group, beta, batch):
    import torch

    from ..flows.mcmc import weigh
    from ..flows.prior import haar_sample

    counter = [0]

    def fn():
        with torch.no_grad():
            z = haar_sample(fl, group, CounterRNG(2), ("bench", counter[0]), range(batch))
            U, log_q = flow.sample(z)
        counter[0] += 1
        return weigh(fl, group, U, log_q, beta)
    return fn


def _timings(args, lat, device, comm):
    fl, flow, tr = _setup(args, lat, device)
    k = [0]

    def train():
        tr.step(k[0])
        k[0] += 1
    prop = _propose(fl, flow, get_group(args.group), args.beta, args.batch)
    t, _ = time_pairs({"train": train, "propose": prop}, comm, min_seconds=args.seconds,
                      max_reps=50, min_reps=3)
    return {"seconds_per_train_step": t["train"], "proposals_per_second": args.batch / t["propose"]}


def _saved_bytes(args, lat, device) -> dict:
    import torch

    fl, flow, tr = _setup(args, lat, device)
    total = [0]

    def pack(t):
        total[0] += t.numel() * t.element_size()
        return t
    if device == "cuda":  # pragma: no cover - GPU only
        torch.cuda.reset_peak_memory_stats()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        tr.step(0)
    out = {"saved_for_backward_MiB": total[0] / 2 ** 20}
    if device == "cuda":  # pragma: no cover - GPU only
        out["cuda_max_allocated_MiB"] = torch.cuda.max_memory_allocated() / 2 ** 20
    return out


def _cost(args, comm, device) -> dict:
    """Flow chain vs HMC on ``--cost-dims`` at ``--beta`` (2D U(1)), all ranks."""
    import torch

    from ..flows.mcmc import IndependenceMetropolis
    from ..flows.modelfile import read_model
    from ..gauge import GaugeField
    from ..gauge.topology import topological_charge
    from ..hmc import HMC, Integrator, Level, WilsonGauge

    dims = parse_dims(args.cost_dims, "--cost-dims")
    lat = Lattice(dims, "auto", comm=comm)
    fl, flow, tr = _setup(args, lat, device, cost=True)
    t0 = time.perf_counter()
    if args.cost_init == "plaquette" and not args.model:
        from ..flows.pretrain import start_from_plaquette

        start_from_plaquette(flow, args.beta, comm)
    if args.model:
        _, weights, _ = read_model(args.model, comm)
        flow.load_state_dict({k: torch.as_tensor(v) for k, v in weights.items()})
        train_s = 0.0
    else:
        tr.lr = args.lr
        for k in range(args.train_steps):
            tr.step(k)
        train_s = time.perf_counter() - t0
    prop = _propose(fl, flow, get_group(args.group), args.beta, args.batch)
    metro = IndependenceMetropolis(CounterRNG(3))
    q, acc = [], 0
    t1 = time.perf_counter()
    cur = None
    n = 0
    while n < args.proposals:
        lw, obs = prop()
        for i in range(len(lw)):
            if metro.step(n, float(lw[i])):
                cur = obs["topological_charge"][i]
                acc += 1
            q.append(cur)
            n += 1
    flow_s = (time.perf_counter() - t1) / n
    U = GaugeField.hot(lat, get_group("U1"), CounterRNG(4))
    U.refresh()
    hmc = HMC(U, Integrator([Level([WilsonGauge(args.beta)], args.hmc_steps, "omelyan")], 1.0),
              CounterRNG(5))
    for k in range(args.hmc_thermalize):
        hmc.trajectory(k)
    qh, acc_h = [], 0
    t2 = time.perf_counter()
    for k in range(args.trajectories):
        rec = hmc.trajectory(args.hmc_thermalize + k)
        acc_h += bool(rec["accepted"])
        qh.append(topological_charge(U))
    hmc_s = (time.perf_counter() - t2) / args.trajectories
    gf, gh = gamma_method(np.asarray(q, float)), gamma_method(np.asarray(qh, float))
    cost_f = flow_s * 2 * gf.tau_int
    cost_h = hmc_s * 2 * gh.tau_int
    indep = n / (2 * gf.tau_int)
    cost_f_train = cost_f + train_s / indep
    return {"dims": list(dims), "beta": args.beta, "train_steps": 0 if args.model else args.train_steps,
            "arch": _arch(args, dims, cost=True), "init": "model" if args.model else args.cost_init,
            "train_seconds": train_s,
            "flow": {"proposals": n, "acceptance": acc / n, "seconds_per_proposal": flow_s,
                     "tau_int_Q": gf.tau_int, "dtau_int_Q": gf.dtau_int, "Q2": float(np.mean(np.square(q))),
                     "cost_per_independent_Q": cost_f, "cost_including_training": cost_f_train},
            "hmc": {"trajectories": args.trajectories, "acceptance": acc_h / args.trajectories,
                    "steps": args.hmc_steps, "seconds_per_trajectory": hmc_s,
                    "tau_int_Q": gh.tau_int, "dtau_int_Q": gh.dtau_int, "Q2": float(np.mean(np.square(qh))),
                    "cost_per_independent_Q": cost_h},
            "hmc_over_flow": cost_h / cost_f, "hmc_over_flow_including_training": cost_h / cost_f_train}


def run(args, comm) -> dict:
    import torch

    torch.set_num_threads(max(1, args.threads))
    device = "cuda" if args.backend == "cupy" else "cpu"
    local = parse_dims(args.local_dims, "--local-dims")
    grid = local_grid(comm.size, len(local))
    glob = tuple(l * g for l, g in zip(local, grid))
    out = {"benchmark": "flow", "ranks": comm.size, "grid": list(grid), "local_dims": list(local),
           "group": args.group, "batch": args.batch, "layers": args.layers,
           "hidden": list(args.hidden), "precision": args.precision, "device": device}
    if args.backend == "cupy":  # pragma: no cover - GPU only
        out["device_name"] = torch.cuda.get_device_name()
    alone = comm.split(0 if comm.rank == 0 else -1)
    one = mem1 = None
    if alone is not None:
        one = _timings(args, Lattice(local, (1,) * len(local), comm=alone), device, alone)
        mem1 = _saved_bytes(args, Lattice(glob, (1,) * len(glob), comm=alone), device)
    comm.barrier()
    one, mem1 = comm.bcast((one, mem1))
    lat = Lattice(glob, grid, comm=comm)
    many = _timings(args, lat, device, comm)
    memN = _saved_bytes(args, lat, device)
    out["weak_scaling"] = {
        "one_rank": one, "all_ranks": many, "global_dims": list(glob),
        "efficiency_train": one["seconds_per_train_step"] / many["seconds_per_train_step"],
        "efficiency_propose": many["proposals_per_second"] / one["proposals_per_second"]}
    out["memory"] = {"global_dims": list(glob), "one_rank": mem1, "per_rank": memN,
                     "ratio": memN["saved_for_backward_MiB"] / mem1["saved_for_backward_MiB"],
                     "ideal_ratio": 1.0 / comm.size}
    if args.group == "U1" and len(local) == 2 and args.proposals > 0:
        out["cost_per_independent_sample"] = _cost(args, comm, device)
    return out
