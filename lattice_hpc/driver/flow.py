"""Job type ``flow``: train a gauge-equivariant normalizing flow, then sample exactly with it.

Steps ``0 .. train.steps-1`` of the chain are training steps (reverse-KL self-training,
:mod:`lattice_hpc.flows.train`); the following steps are proposals of an independence
Metropolis chain with the flow as the proposal (:mod:`lattice_hpc.flows.mcmc`):
``sample.thermalize`` of them, then ``sample.measure`` measured ones (every
``sample.every``-th).  Both phases run in the driver's one step loop (:mod:`.chain`), so they
checkpoint, stop cleanly and resume like every job type: a checkpoint holds the chain's current
field, the weights and the Adam state (named datasets, no pickle), the training history, the
current ``log w`` and observables, and the step; a run killed at any point resumes bit for bit
on the same process grid.

Records (one per measured proposal): ``step``, ``proposal``, ``accepted``, ``log_w`` (of the
proposal, ``log p - log q`` up to ``log Z``), and the observables of the chain's current field.
In a composite chain (``sample.heatbath_every``) a heatbath step's record has ``heatbath: true``
and no ``accepted``/``log_w``; the heatbath changes the field, whose ``log q`` the inverse flow
then gives, so the next proposal's Metropolis test is exact (each kernel preserves ``exp(-S)``).
Observables:
``plaquette`` (and its spatial/temporal parts), for 2D U(1) ``topological_charge`` and
``topological_charge_sq``.  The summary adds ``ess``: the effective sample size per proposal of
the reweighting, ``(sum w)^2 / (N sum w^2)``, with a jackknife error; for 2D U(1) also
``train_kl_last``, the exact ``KL(q || p)`` in nats at the end of training (the loss plus the
exact ``ln Z``, :func:`lattice_hpc.gauge.exact_u1.log_partition`).

Files in the run directory besides the driver's: ``model.h5`` (the trained flow,
:mod:`lattice_hpc.flows.modelfile`; ``flow.model = RUN_DIR/model.h5`` reuses it in another job),
``training.json`` and ``training.png`` (the history of loss, ESS and acceptance estimate), written
when training ends and at every checkpoint during training.

Keys (beyond :data:`.config.COMMON`), defaults in brackets::

    [flow]   layers [16] (coupling layers; 4*ndim change every link once), kernel ["spline"]
             (U(1): spline | ncp), bins [8], hidden [[16, 16]], kernel_size [3], kernel_shape
             ["cube"] (cube | cross: the centre and the nearest sites along each axis; 9 taps
             instead of 81 in 4D), masks ["planes"] (the order of the masks over the layers,
             :func:`lattice_hpc.flows.masks.layer_masks`: ``planes`` makes every plaquette of
             a 4D lattice active once in 24 layers, ``stripes``, that of runs and model files
             made before the key existed, leaves two of the six planes to layers 17-32; in 2D
             both are the same; ``sweep``, 2D only, transforms every plaquette once, row by row,
             and never again, in ``L0 + L1 - 2`` layers per sweep: ``layers`` must be a multiple
             of that),
             model [""] (a model file to start from; it must fit group, lattice and architecture),
             resize [false] (the model may come from another lattice size: the layers are
             translation equivariant and periodic, so their weights do not depend on the volume;
             a flow trained on a small lattice starts the training on a large one; Abbott et
             al., arXiv 2211.07541)
    [train]  steps [1000], batch [64], lr [1e-3], warmup [0], halflife [0.0] (steps in which the
             learning rate halves; 0: constant), clip [0.0] (gradient-norm clipping; 0: off),
             seed [1] (weight initialisation and the training prior draws), precision ["auto"]
             (auto | double | single: the precision of training; auto = ``backend.precision``.
             ``single`` with ``backend.precision = "double"`` trains in float32, about 3x faster
             on CPUs, and samples with the same weights in float64), init ["identity"]
             (identity | plaquette: U(1) only, every layer's kernel starts at the map of the
             uniform angle to the one-plaquette density exp(beta cos theta), fitted in a few
             seconds, :mod:`lattice_hpc.flows.pretrain`; with flow.masks = "sweep" in 2D that
             flow is exact but for one plaquette before any training.  Ignored with
             flow.model)
    [sample] thermalize [0], measure [1000], every [1], batch [64] (proposals made at once),
             seed [2] (proposals and accept/reject), heatbath_every [0] (a composite chain: after
             every N proposals one heatbath sweep and ``overrelax`` [0] overrelaxation sweeps of
             the chain's field; 0: flow proposals only)

    [fermions] flavours [0] (2: two degenerate Wilson flavours, 2D U1 -- the Schwinger model --
             or 4D SU3), kappa, determinant ["exact"] (exact | pseudofermion | stochastic: how
             det(D^dag D) enters the training loss and the chain, :mod:`lattice_hpc.flows.
             determinant`), proposal ["triangular"] (triangular | free | learned: the operator M_0
             of the pseudofermion proposals phi = s M_0^dag eta; learned: the triangular operator
             with weights per path class and a scale s(x) = exp(a + b P(x)) of the local
             plaquette, trained by the conditional's reverse KL before the first proposal, :mod:`lattice_hpc.flows.conditional`, on conditional_steps [100]
             batches of conditional_batch [8] proposals with Adam at conditional_lr [0.02]; the
             run directory's ``conditional.json`` holds its history and parameters, and the
             summary ``conditional``), proposal_kappa [0.0] (of free; 0: kappa),
             proposal_scale [1.0] (s; learned: its start), hasenbusch [[]] (intermediate kappas k_1 < ... <
             kappa: the pseudofermion weights or the stochastic ratio factorised as
             det(M_1^dag M_1) prod det(W^dag W), one pseudofermion each; records then carry
             log_w_fermion_factors), tol [1e-12] (CG), pion [false] (the pion correlator of
             each accepted field in the records), condensate_noise [0] (Z2 vectors
             of (1/V) Tr D^-1 per accepted field; 0: off); the records then also carry the
             Polyakov loop.  Records then carry ``log_w_fermion``
             (the fermion part of the proposal's log-weight; for ``stochastic`` the log of the
             estimated determinant ratio), and the summary its variance and that of ``log_w``.

``update.*`` keys do not apply (except ``update.start``, the field checkpointed before the first
proposal).  The flow runs on the backend's device (``backend.name = "cupy"`` puts it on CUDA); it
samples in ``backend.precision`` and trains in ``train.precision``; the Metropolis step is always
float64.
"""

from __future__ import annotations

import json
import math
import os
import time

import numpy as np

from .. import faults
from ..errors import ConfigError, FlowError
from ..groups import get_group
from ..rng import CounterRNG
from .config import Key
from .jobtype import JobType, Schedule

ARCH = ("layers", "kernel", "bins", "hidden", "kernel_size", "kernel_shape", "masks")


class FlowJob(JobType):
    name = "flow"
    unit = ("step", "steps")
    schema = {
        "flow": {"layers": Key(16, int, ">=1"), "kernel": Key("spline", str, ("spline", "ncp")),
                 "bins": Key(8, int, ">=1"), "hidden": Key([16, 16], list),
                 "kernel_size": Key(3, int, ">=1"),
                 "kernel_shape": Key("cube", str, ("cube", "cross")),
                 "masks": Key("planes", str, ("stripes", "planes", "sweep"), before="stripes"),
                 "model": Key("", str), "resize": Key(False, bool)},
        "train": {"steps": Key(1000, int, ">=0"), "batch": Key(64, int, ">=1"),
                  "lr": Key(1e-3, float, ">0"), "warmup": Key(0, int, ">=0"),
                  "halflife": Key(0.0, float, ">=0"), "clip": Key(0.0, float, ">=0"),
                  "seed": Key(1, int, ">=0"),
                  "precision": Key("auto", str, ("auto", "double", "single")),
                  "init": Key("identity", str, ("identity", "plaquette"))},
        "sample": {"thermalize": Key(0, int, ">=0"), "measure": Key(1000, int, ">=1"),
                   "every": Key(1, int, ">=1"), "batch": Key(64, int, ">=1"),
                   "seed": Key(2, int, ">=0"), "heatbath_every": Key(0, int, ">=0"),
                   "overrelax": Key(0, int, ">=0")},
        "fermions": {"flavours": Key(0, int, (0, 2)), "kappa": Key(0.0, float, ">=0"),
                     "determinant": Key("exact", str, ("exact", "pseudofermion", "stochastic")),
                     "proposal": Key("triangular", str, ("triangular", "free", "learned")),
                     "conditional_steps": Key(100, int, ">=1"),
                     "conditional_batch": Key(8, int, ">=1"),
                     "conditional_lr": Key(0.02, float, ">0"),
                     "proposal_kappa": Key(0.0, float, ">=0"),
                     "proposal_scale": Key(1.0, float, ">0"), "tol": Key(1e-12, float, "(0,1)"),
                     "pion": Key(False, bool), "condensate_noise": Key(0, int, ">=0"),
                     "hasenbusch": Key([], list)},
    }
    chain_keys = {"flow": ARCH + ("model", "resize"),
                  "train": ("steps", "batch", "lr", "warmup", "halflife", "clip", "seed", "precision",
                            "init"),
                  "sample": ("thermalize", "every", "seed", "heatbath_every", "overrelax"),
                  "fermions": ("flavours", "kappa", "determinant", "proposal", "proposal_kappa",
                               "proposal_scale", "tol", "hasenbusch", "conditional_steps",
                               "conditional_batch", "conditional_lr")}
    observables = ("accepted", "log_w", "log_w_fermion", "plaquette",
                   "plaquette_spatial", "plaquette_temporal", "topological_charge",
                   "topological_charge_sq", "polyakov_re", "polyakov_im", "polyakov_abs", "pion",
                   "condensate")

    @classmethod
    def check(cls, cfg: dict, source: str) -> None:
        from ..flows.masks import canonical_order, check_tiling, layer_masks

        f = cfg["flow"]
        group, nd = cfg["action"]["group"], len(cfg["lattice"]["dims"])
        if nd in (2, 4):  # the stored form: in 2D both orders are one (a 2D run resumes either way)
            f["masks"] = canonical_order(nd, f["masks"])
        if group not in ("U1", "SU2", "SU3"):
            raise ConfigError(f"{source}: action.group = {group!r}: flows exist for U1, SU2 and SU3")
        if nd not in (2, 4):
            raise ConfigError(f"{source}: lattice.dims: flows run on 2D or 4D lattices, not {nd}D")
        if cfg["train"]["init"] == "plaquette" and group != "U1":
            raise ConfigError(f"{source}: train.init = 'plaquette' starts the kernels of a U(1) "
                              f"flow at the one-plaquette map; action.group is {group}")
        if f["masks"] == "sweep" and f["resize"]:
            raise ConfigError(f"{source}: flow.resize = true with flow.masks = 'sweep': the sweep's "
                              "masks are made for one lattice size (its period is the lattice), so "
                              "its weights do not carry to another volume")
        if f["kernel_size"] % 2 != 1:
            raise ConfigError(f"{source}: flow.kernel_size = {f['kernel_size']} must be odd")
        if f["kernel"] == "ncp" and group != "U1":
            raise ConfigError(f"{source}: flow.kernel = 'ncp' is a U(1) kernel; SU(N) flows use "
                              "spline")
        if not all(isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in f["hidden"]):
            raise ConfigError(f"{source}: flow.hidden = {f['hidden']!r} must be a list of positive "
                              "integers (channels of the hidden convolutions)")
        fe = cfg["fermions"]
        if fe["flavours"]:
            if (group, nd) not in (("U1", 2), ("SU3", 4)):
                raise ConfigError(f"{source}: fermions.flavours = {fe['flavours']} needs a 2D U1 "
                                  f"lattice (the Schwinger model) or a 4D SU3 one, got {group} in {nd}D")
            kmax = 0.5 if nd == 2 else 0.25
            if not 0 < fe["kappa"] < kmax:
                raise ConfigError(f"{source}: fermions.kappa = {fe['kappa']} must be in (0, {kmax})")
            if cfg["sample"]["heatbath_every"]:
                raise ConfigError(f"{source}: sample.heatbath_every = {cfg['sample']['heatbath_every']}"
                                  ": the heatbath is that of the pure gauge action; with "
                                  "fermions.flavours = 2 the chain takes flow proposals only")
        if fe["proposal"] == "learned" and (not fe["flavours"] or fe["determinant"] != "pseudofermion"):
            raise ConfigError(f"{source}: fermions.proposal = 'learned' is the learned pseudofermion "
                              "conditional of fermions.determinant = 'pseudofermion' (with "
                              f"flavours = 2); got determinant = {fe['determinant']!r}, flavours = "
                              f"{fe['flavours']}")
        hb = fe["hasenbusch"]
        if hb:
            if not fe["flavours"]:
                raise ConfigError(f"{source}: fermions.hasenbusch = {hb!r} factorises the fermion "
                                  "determinant, but fermions.flavours = 0")
            try:  # numbers, their order and the treatment (the sampler's own checks)
                from ..flows.determinant import check_hasenbusch

                check_hasenbusch(hb, fe["kappa"], fe["determinant"], fe["proposal"])
            except ConfigError as exc:
                raise ConfigError(f"{source}: {exc}") from None
        try:
            check_tiling(cfg["lattice"]["dims"], layer_masks(nd, f["layers"], f["masks"],
                                                             cfg["lattice"]["dims"]))
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    @classmethod
    def domain(cls, cfg: dict, comm):
        """Data-parallel replicas when the process grid asks for them: with an explicit
        ``lattice.grid`` of ``n`` ranks on ``R n`` ranks, ranks ``r n .. (r+1) n - 1`` form
        replica ``r``, each holding its share of every batch split over the grid."""
        from ..geometry.decomposition import parse_dims

        grid = cfg["lattice"]["grid"]
        if grid.strip() == "auto":
            return comm
        n = math.prod(parse_dims(grid, "lattice.grid"))
        if n >= comm.size:
            return comm
        if comm.size % n:
            raise ConfigError(f"lattice.grid = {grid} has {n} ranks, which does not divide the "
                              f"{comm.size} ranks of the job (flow jobs run {comm.size} // {n} "
                              "data-parallel replicas of the grid)")
        batches = [("train.batch", cfg["train"]["batch"]), ("sample.batch", cfg["sample"]["batch"])]
        if cfg["fermions"]["flavours"] and cfg["fermions"]["proposal"] == "learned":
            batches.append(("fermions.conditional_batch", cfg["fermions"]["conditional_batch"]))
        for what, b in batches:
            if b % (comm.size // n):
                raise ConfigError(f"{what} = {b} must be a multiple of the {comm.size // n} "
                                  f"data-parallel replicas (lattice.grid = {grid} on {comm.size} ranks)")
        return comm.split(comm.rank // n, comm.rank)

    @classmethod
    def schedule(cls, cfg: dict) -> Schedule:
        s = cfg["sample"]
        return Schedule(cfg["train"]["steps"] + s["thermalize"], s["measure"], s["every"])

    # -- set up -----------------------------------------------------------------------------------
    def _setup(self):
        import torch

        from ..comm import self_comm
        from ..flows.geometry import FlowLattice
        from ..flows.mcmc import IndependenceMetropolis
        from ..flows.model import GaugeFlow
        from ..flows.train import Parallel, Trainer

        cfg = self.cfg
        torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1") or 1)))
        device = "cuda" if self.backend.name == "cupy" else "cpu"
        self.group = get_group(cfg["action"]["group"])
        self.beta = cfg["action"]["beta"]
        self.sample_precision = cfg["backend"]["precision"]
        train_precision = cfg["train"]["precision"]
        if train_precision == "auto":
            train_precision = self.sample_precision
        self.fl = FlowLattice(self.lattice, device, train_precision)
        self.arch = {"group": cfg["action"]["group"], "dims": list(cfg["lattice"]["dims"]),
                     **{k: cfg["flow"][k] for k in ARCH}}
        self.flow = GaugeFlow(self.fl, self.arch, cfg["train"]["seed"])
        world, domain = self.world, self.lattice.comm
        replicas = world.size // domain.size
        cross = world.split(domain.rank, world.rank) if replicas > 1 else self_comm()
        self.par = Parallel(world, domain, cross, world.rank // domain.size, replicas)
        t = cfg["train"]
        self.metro = IndependenceMetropolis(CounterRNG(cfg["sample"]["seed"]))
        self.fermion = None
        fe = cfg["fermions"]
        if fe["flavours"]:
            from ..flows.determinant import FermionDeterminant

            if fe["determinant"] == "stochastic" and replicas > 1:
                raise ConfigError("fermions.determinant = 'stochastic' runs on one replica of "
                                  "the process grid (its Gibbs step needs every proposal on every "
                                  f"rank); lattice.grid = {cfg['lattice']['grid']} asks for {replicas}")
            self.fermion = FermionDeterminant(self.lattice, self.group, fe["kappa"], fe["determinant"],
                                              self.metro.rng, CounterRNG(t["seed"]), None,
                                              fe["proposal_kappa"], fe["tol"], fe["proposal_scale"],
                                              fe["proposal"], fe["hasenbusch"])
        self.trainer = Trainer(self.flow, self.group, self.beta, CounterRNG(t["seed"]), self.par,
                               t["batch"], t["lr"], t["warmup"], t["halflife"], t["clip"],
                               self.fermion)
        self.log_w_gauge = None  # stochastic route: the current field's log w without phi
        self.train_steps = t["steps"]
        self.history: dict[str, list] = {k: [] for k in ("loss", "ess", "acceptance_estimate",
                                                         "grad_norm", "lr", "seconds")}
        self.current = None  # torch tensor of the chain's field (sampling phase)
        self.current_obs: dict = {}
        self._batch = (None, None)
        self._sample_t0 = None  # (time, step) of this process's first sampling step
        self.run_dir = cfg["output"]["dir"].replace("{name}", cfg["job"]["name"])
        self.t0 = time.perf_counter()

    def start(self, field) -> None:
        self._setup()
        self.field = field
        if self.cfg["flow"]["model"]:
            self._load_model(self.cfg["flow"]["model"])
        elif self.cfg["train"]["init"] == "plaquette":
            from ..flows.pretrain import start_from_plaquette

            t = time.perf_counter()
            kl = start_from_plaquette(self.flow, self.beta, self.world)
            self.log.info(f"train.init = plaquette: every layer's kernel starts at the map of the "
                          f"uniform angle to exp(beta cos theta) (KL {kl:.2e} nats per plaquette, "
                          f"{time.perf_counter() - t:.1f} s)")
        if self.train_steps == 0:
            self._finish_training()

    def resume(self, ckpt) -> None:
        self._setup()
        self.field = ckpt.field
        st = ckpt.state
        self.trainer.load_arrays(ckpt.arrays)
        for k in self.history:
            if f"history:{k}" in ckpt.arrays:
                self.history[k] = [float(v) for v in ckpt.arrays[f"history:{k}"]]
        if len(self.history["loss"]) >= self.train_steps:
            self._to_sampling()
        if st.get("log_w_gauge") is not None:
            self.log_w_gauge = float(st["log_w_gauge"])
        if st.get("conditional") is not None:
            if getattr(self.fermion, "conditional", None) is None:
                raise ConfigError("the checkpoint holds a learned pseudofermion conditional, but "
                                  "fermions.proposal is not 'learned'")
            self.fermion.conditional.load(st["conditional"])
        if st.get("log_w") is not None:
            self.metro.log_w = float(st["log_w"])
            self.current_obs = dict(st["current"])
            self.current = self._tensor_of(ckpt.field)
            self._field_of = self.current

    def _load_model(self, path: str) -> None:
        import torch

        from ..flows.modelfile import check_architecture, read_model

        arch, weights, _ = read_model(path, self.world)
        wanted = dict(self.arch)
        if self.cfg["flow"]["resize"]:  # translation-equivariant layers: weights fit any volume
            wanted.pop("dims")
        check_architecture(path, arch, wanted)
        try:
            self.flow.load_state_dict({k: torch.as_tensor(v) for k, v in weights.items()})
        except RuntimeError as exc:
            raise FlowError(f"flow.model = {path}: its weights do not fit the architecture "
                            f"({str(exc).splitlines()[0]})") from None

    # -- fields between the driver (GaugeField) and the flow (torch) --------------------------------
    def _tensor_of(self, field):
        import torch

        links = field.backend.asnumpy(field.interior())
        if self.group.N == 1:
            arr = np.angle(links[..., 0, 0])
            return torch.as_tensor(arr).to(self.fl.device, self.fl.real)
        return torch.as_tensor(links).to(self.fl.device, self.fl.complex)

    @property
    def field(self):
        if self.current is not None and self._field_of is not self.current:
            U = self.current.detach().cpu().numpy()
            links = np.exp(1j * U.astype(np.float64))[..., None, None] if self.group.N == 1 else U
            self._field.set_interior(self._field.backend.asarray(links.astype(np.complex128)))
            self._field_of = self.current
        return self._field

    @field.setter
    def field(self, value):
        self._field, self._field_of = value, None

    # -- steps ------------------------------------------------------------------------------------
    def step(self, n: int, m: int | None) -> dict | None:
        if n < self.train_steps:
            t = time.perf_counter()
            d = self.trainer.step(n)
            d["seconds"] = time.perf_counter() - t  # of this step (the history's cost of training)
            for k in self.history:
                self.history[k].append(d[k])
            self._last = d
            if n == self.train_steps - 1:
                self._finish_training()
            return None
        return self._sample(n - self.train_steps, n, m)

    def _finish_training(self) -> None:
        from ..flows.modelfile import write_model

        write_model(os.path.join(self.run_dir, "model.h5"), self.flow, self.world,
                    {"beta": self.beta, "train_steps": len(self.history["loss"]),
                     "precision": self.fl.precision})
        self._write_history()
        self._to_sampling()

    def _to_sampling(self) -> None:
        """The flow of the sampling phase: the trained weights (which the trainer keeps, and the
        checkpoints hold, in the training precision) cast to ``backend.precision``."""
        import torch

        from ..flows.geometry import FlowLattice
        from ..flows.model import GaugeFlow

        if self.fl.precision == self.sample_precision:
            return
        fl = FlowLattice(self.lattice, self.fl.device, self.sample_precision)
        flow = GaugeFlow(fl, self.arch, self.cfg["train"]["seed"])
        with torch.no_grad():
            flow.load_state_dict(self.flow.state_dict())  # copies, casting to fl's dtype
        self.fl, self.flow = fl, flow

    def _heatbath(self, i: int, n: int, m: int | None) -> dict | None:
        """Sampling step ``i`` of a composite chain: heatbath (+ overrelaxation) of the field."""
        import torch

        from ..flows.mcmc import weigh
        from ..update import heatbath_sweep, overrelax_sweep

        U = self.field
        U.refresh()
        heatbath_sweep(U, self.beta, self.metro.rng, i)
        for _ in range(self.cfg["sample"]["overrelax"]):
            overrelax_sweep(U, self.beta)
        cur = self._tensor_of(U)
        with torch.no_grad():
            log_q = self.flow.log_q(cur.unsqueeze(0))
        lws, obs = weigh(self.fl, self.group, cur.unsqueeze(0), log_q, self.beta)
        lw = float(lws[0])
        if not math.isfinite(lw):
            raise FlowError(f"heatbath step {i}: the log-weight of the new field is {lw}")
        self.metro.log_w = lw
        self.current, self._field_of = cur, cur
        self.current_obs = {k: float(v[0]) for k, v in obs.items()}
        self.current_obs.update(self._field_observables(i))
        self._last = {"accepted": True, "log_w": lw, "heatbath": True}
        if m is None:
            return None
        return {"step": n, "proposal": i, "heatbath": True,
                "seconds": round(time.perf_counter() - self.t0, 4), **self.current_obs}

    def _sample(self, i: int, n: int, m: int | None) -> dict | None:
        import torch

        if self._sample_t0 is None:
            self._sample_t0 = (time.perf_counter(), n)

        hb = self.cfg["sample"]["heatbath_every"]
        if hb and i % (hb + 1) == hb:
            return self._heatbath(i, n, m)

        from ..flows.mcmc import weigh
        from ..flows.prior import haar_sample

        B = self.cfg["sample"]["batch"]
        j = i // B
        par = self.par
        cond = getattr(self.fermion, "conditional", None)
        if cond is not None and not cond.trained:
            self._train_conditional()
        if self._batch[0] != j:
            share = par.share(B)
            with torch.no_grad():
                z = haar_sample(self.fl, self.group, self.metro.rng, ("flow-sample",),
                                range(j * B + share.start, j * B + share.stop))
                U, log_q = self.flow.sample(z)
            lw, obs = weigh(self.fl, self.group, U, log_q, self.beta)
            diag = {}
            if self.fermion is not None:
                lwf = self.fermion.proposal_terms(U, j * B + share.start)
                lw = lw + lwf
                diag = {"log_w_fermion": lwf}
                if self.fermion.last_factors is not None:  # Hasenbusch: each factor's part
                    diag["log_w_fermion_factors"] = self.fermion.last_factors
            lw = faults.value("flow-log-weight", par.gather(lw))
            obs = {k: par.gather(v) for k, v in obs.items()}
            diag = {k: par.gather(v) for k, v in diag.items()}
            self._batch = (j, (U, lw, obs, diag))
        U, lw, obs, diag = self._batch[1]
        k = i - j * B
        lw_k = float(lw[k])
        extra = {name: (float(v[k]) if np.ndim(v) == 1 else [float(x) for x in v[k]])
                 for name, v in diag.items()}
        gibbs = self.fermion is not None and self.fermion.treatment == "stochastic"
        if gibbs and self.metro.log_w is not None:  # phi | current field, then U' | phi
            cur_f, new_f = self.fermion.ratio_terms(self.current, U[k], i)
            self.metro.log_w = self.log_w_gauge + cur_f
            extra["log_w_fermion"] = new_f - cur_f  # log r, the estimated det ratio
            if self.fermion.last_ratio_factors is not None:  # Hasenbusch: each factor's log r
                extra["log_w_fermion_factors"] = list(self.fermion.last_ratio_factors)
            lw_k = lw_k + new_f
        accepted = self.metro.step(i, lw_k)
        if accepted and gibbs:
            self.log_w_gauge = float(lw[k])
        if accepted:
            n_share = B // par.replicas
            owner, local = divmod(k, n_share)
            if par.replicas == 1:
                self.current = U[local].clone()
            else:  # the replica that made proposal k sends it to the others
                from ..comm.autograd import broadcast_tensor

                mine = U[local].clone() if owner == par.replica else torch.empty_like(U[0])
                self.current = broadcast_tensor(mine, par.cross, root=owner)
            self.current_obs = {name: float(v[k]) for name, v in obs.items()}
            self.current_obs.update(self._field_observables(i))
        self._last = {"accepted": accepted, "log_w": lw_k}
        if m is None:
            return None
        return {"step": n, "proposal": i, "accepted": bool(accepted), "log_w": lw_k, **extra,
                "seconds": round(time.perf_counter() - self.t0, 4), **self.current_obs}

    def _train_conditional(self) -> None:
        """Collective: train the learned pseudofermion conditional on proposals of the trained
        flow (``fermions.conditional_*``; :mod:`lattice_hpc.flows.conditional`) and write its
        history to ``conditional.json``."""
        import torch

        from ..flows.fermions import _fields, complex_links
        from ..flows.prior import haar_sample

        fe = self.cfg["fermions"]
        share = self.par.share(fe["conditional_batch"])

        def fields_of_step(step):
            with torch.no_grad():
                z = haar_sample(self.fl, self.group, self.metro.rng, ("flow-cond-z", int(step)), share)
                U, _ = self.flow.sample(z)
            U = complex_links(self.group, U.to(torch.complex128 if U.is_complex() else torch.float64))
            return share, _fields(self.lattice, self.group, U)

        t = time.perf_counter()
        self.fermion.train_conditional(fields_of_step, fe["conditional_steps"], fe["conditional_lr"],
                                       self.par.gather, self.log.info)
        cond = self.fermion.conditional
        cond.theta = np.array(self.world.bcast(cond.state(), root=0))  # bitwise the same everywhere
        self.log.info(f"learned conditional trained in {time.perf_counter() - t:.1f} s: "
                      f"theta = {cond.state()}")
        if self.world.rank == 0:
            os.makedirs(self.run_dir, exist_ok=True)
            path = os.path.join(self.run_dir, "conditional.json")
            with open(path + ".tmp", "w") as fh:
                json.dump({"theta": cond.state(), "kappas": list(cond.kappas),
                           "levels": list(cond.levels), "history": cond.history,
                           "seconds": time.perf_counter() - t}, fh)
            os.replace(path + ".tmp", path)

    def _field_observables(self, i: int) -> dict:
        """Collective: observables of a newly accepted field that need the whole field: the
        Polyakov loop (4D, or any job with fermions, whose boundary conditions couple to it), and
        in a job with fermions, as ``[fermions]`` asks, the pion correlator at ``kappa``
        (``pion = true``) and ``(1/V) Tr D^{-1}`` (``condensate_noise`` Z2 vectors keyed by the
        proposal ``i``).  Computed once per accepted field; rejected proposals keep them with the
        field."""
        from ..fermions import WilsonDirac, chiral_condensate, pion_correlator, point_propagator
        from ..gauge.observables import polyakov_loop

        if self.fermion is None and self.lattice.ndim != 4:
            return {}
        U = self.field
        U.refresh()
        p = polyakov_loop(U)
        out = {"polyakov_re": p.real, "polyakov_im": p.imag, "polyakov_abs": abs(p)}
        if self.fermion is None:
            return out
        fe = self.cfg["fermions"]
        if fe["pion"] or fe["condensate_noise"]:
            D = WilsonDirac(U, fe["kappa"])
            if fe["pion"]:
                out["pion"] = [float(c) for c in pion_correlator(U.lattice, point_propagator(D))]
            if fe["condensate_noise"]:
                out["condensate"] = chiral_condensate(D, fe["condensate_noise"],
                                                      CounterRNG(self.cfg["sample"]["seed"]),
                                                      purpose=("condensate", int(i))).mean
        return out

    # -- checkpointed state -------------------------------------------------------------------------
    def state(self) -> dict:
        if len(self.history["loss"]) and self.current is None:
            self._write_history()
        cond = getattr(self.fermion, "conditional", None)
        return {"log_w": self.metro.log_w, "current": self.current_obs,
                "trained": len(self.history["loss"]), "log_w_gauge": self.log_w_gauge,
                "conditional": cond.state() if cond is not None and cond.trained else None}

    def arrays(self) -> dict:
        out = self.trainer.arrays()
        for k, v in self.history.items():
            out[f"history:{k}"] = np.asarray(v, dtype=np.float64)
        return out

    def summary(self, records) -> dict:
        lw = np.array([r["log_w"] for r in records if "log_w" in r], dtype=np.float64)
        out = {}
        if len(lw) >= 2:
            out["ess"] = ess_and_error(lw)
        pure_gauge = self.fermion is None
        lwf = np.array([r["log_w_fermion"] for r in records if "log_w_fermion" in r])
        if len(lwf) >= 2:  # the fermion factor's share of the weights' spread
            out["log_w_fermion_var"] = float(lwf.var(ddof=1))
            out["log_w_var"] = float(lw.var(ddof=1))
        lff = np.array([r["log_w_fermion_factors"] for r in records if "log_w_fermion_factors" in r])
        if len(lff) >= 2:  # Hasenbusch: the variance of each factor's part
            out["log_w_fermion_var_factors"] = [float(v) for v in lff.var(axis=0, ddof=1)]
        cond = getattr(self.fermion, "conditional", None)
        if cond is not None and cond.trained:  # its history: conditional.json in the run directory
            out["conditional"] = {"theta": cond.state()}
        if pure_gauge and self.group.N == 1 and self.lattice.ndim == 2 and len(lw) >= 2:
            out["exact"] = exact_comparison(records, self.beta, self.lattice.volume)
        if self.history["loss"]:
            tail = self.history["loss"][-min(50, len(self.history["loss"])):]
            out["train_loss_last"] = float(np.mean(tail))
            out["train_steps_done"] = len(self.history["loss"])
            if pure_gauge and self.group.N == 1 and self.lattice.ndim == 2:  # KL = loss + ln Z
                from ..gauge.exact_u1 import log_partition

                out["train_kl_last"] = out["train_loss_last"] + log_partition(
                    self.beta, self.lattice.volume)
        return out

    def remaining_seconds(self, done: int, total: int, per: float) -> float:
        """Training steps at their recent cost; a proposal at a third of a training step's cost
        per sample (a forward pass, no backward) until sampling has been timed."""
        recent = self.history["seconds"][-50:]
        step_s = float(np.mean(recent)) if recent else per
        if done < self.train_steps:
            return step_s * (self.train_steps - done) + step_s / (3 * self.trainer.batch) * (
                total - self.train_steps)
        if self._sample_t0 is None or done <= self._sample_t0[1]:
            return per * (total - done)
        t0, n0 = self._sample_t0
        return (time.perf_counter() - t0) / (done - n0) * (total - done)

    def phase(self, n: int) -> str:
        return "training" if n < self.train_steps else "thermalizing"

    def progress(self, n: int, rec: dict | None) -> str:
        d = getattr(self, "_last", None) or {}
        if n < self.train_steps:
            B = self.trainer.batch
            ess = d.get("ess", float("nan"))
            # a batch's ESS cannot fall below 1/B: near it, the batch does not resolve the figures
            flag = "  (unresolved: ESS near 1/batch; true ESS and acceptance lower)" \
                if ess * B < 2 else ""
            return (f"train loss {d.get('loss', float('nan')):.4f}  ESS {ess:.3f}"
                    f"  acc~ {d.get('acceptance_estimate', float('nan')):.3f}  lr {d.get('lr', 0):.2e}"
                    + flag)
        what = "heatbath" if d.get("heatbath") else "accept" if d.get("accepted") else "reject"
        return (f"sample {what}  log_w {d.get('log_w', 0):.3f}"
                f"  plaquette {self.current_obs.get('plaquette', float('nan')):.6f}")

    # -- the training history (rank 0 writes) --------------------------------------------------------
    def _write_history(self) -> None:
        if self.world.rank != 0 or not self.history["loss"]:
            return
        path = os.path.join(self.run_dir, "training.json")
        tmp = path + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(self.history, fh)
        os.replace(tmp, path)
        try:
            plot_history(self.history, os.path.join(self.run_dir, "training.png"),
                         f"{self.arch['group']} {'x'.join(map(str, self.arch['dims']))} "
                         f"beta={self.beta}")
        except ImportError:
            self.log.warning("matplotlib is not installed: no training.png")


def exact_comparison(records, beta: float, volume: int) -> dict:
    """2D U(1): the exact finite-volume plaquette and ``<Q^2>`` (:mod:`lattice_hpc.gauge.exact_u1`)
    and the chain's deviation from them in units of its (Gamma-method) error."""
    from ..analysis import gamma_method
    from ..gauge import exact_u1

    exact = {"plaquette": exact_u1.plaquette(beta, volume),
             "topological_charge_sq": exact_u1.topological_susceptibility(beta, volume)[0]}
    out = {}
    for k, v in exact.items():
        g = gamma_method(np.array([r[k] for r in records], dtype=np.float64))
        out[k] = {"exact": v, "chain": [g.value, g.error], "tau_int": g.tau_int,
                  "deviation_sigma": (g.value - v) / g.error if g.error > 0 else None}
    return out


def ess_and_error(log_w: np.ndarray, bins: int = 20) -> list:
    """``[ESS per sample, jackknife error]`` of the reweighting with weights ``exp(log_w)``."""
    from ..flows.train import ess_per_sample

    n = len(log_w)
    nb = min(bins, n)
    edges = np.linspace(0, n, nb + 1).astype(int)
    jk = np.array([ess_per_sample(np.concatenate([log_w[:a], log_w[b:]]))
                   for a, b in zip(edges[:-1], edges[1:])])
    err = math.sqrt((nb - 1) / nb * ((jk - jk.mean()) ** 2).sum())
    return [ess_per_sample(log_w), err]


def plot_history(history: dict, path: str, title: str) -> None:
    """A PNG of the training history: loss, ESS and the acceptance estimate against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.arange(len(history["loss"]))
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    loss = np.asarray(history["loss"])
    ax[0].plot(steps, loss, lw=0.5, color="0.6", label="batch")
    if len(loss) >= 20:
        k = max(len(loss) // 50, 5)
        ax[0].plot(steps[k - 1:], np.convolve(loss, np.ones(k) / k, "valid"), label=f"mean of {k}")
    if len(loss) >= 40:  # the first steps fall by orders of magnitude more than the rest
        tail = loss[len(loss) // 20:]
        tail = tail[np.isfinite(tail)]
        if len(tail):
            lo, hi = float(tail.min()), float(np.percentile(tail, 99))
            ax[0].set_ylim(lo - 0.1 * (hi - lo + 1e-9), hi + 0.1 * (hi - lo + 1e-9))
    ax[0].set_xlabel("training step")
    ax[0].set_ylabel("loss = E[log q + S]")
    ax[0].legend()
    ax[1].plot(steps, history["ess"], lw=0.5, label="ESS per sample")
    ax[1].plot(steps, history["acceptance_estimate"], lw=0.5, label="acceptance estimate")
    ax[1].set_ylim(0, 1)
    ax[1].set_xlabel("training step")
    ax[1].legend()
    fig.suptitle(title)
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
