"""Communication of PyTorch tensors that autograd differentiates through: halos and sums.

The normalizing flows (:mod:`lattice_hpc.flows`) run on this rank's block of the lattice.  Their
convolutions and loops need neighbour sites, and their log-densities are sums over all sites; the
two operations here make both exact across rank boundaries, in the forward pass and in the
gradients of training:

- :func:`halo_pad` -- pad the site axes of a tensor by ``depth`` sites on both sides with the
  neighbours' data (periodic lattice).  Forward: fill the halo (one ``MPI_Sendrecv`` pair per
  side of each partitioned direction; directions that are not partitioned wrap on-rank with
  ``torch.cat``).  Backward, the adjoint: the gradient that arrived in a halo entry belongs to the
  neighbour that owns that site, so it is sent back and *added* to the owner's gradient.  The
  directions are padded one after the other, each over the already padded extent of the previous
  ones, so edges and corners arrive too (the slab scheme of :mod:`.halo`), and the backward of the
  composition is exact for them as well.
- :func:`sum_over_ranks` -- the global sum of per-rank partial sums.  Forward: a reduction to
  rank 0 and a broadcast (:func:`allreduce_tensor`: the same bits on every rank).
  Backward: the identity, which is exact when every rank goes on with the same function of the
  global sum (as the loss of a flow does): rank ``r``'s backward then yields the gradient of its
  own partial sum, and :func:`allreduce_gradients` adds the parameter gradients of all ranks.
- :func:`shared_sum_over_ranks` -- the same sum, for a global value that each rank then uses in
  its *own* local computation (a loop of the lattice that conditions the coupling layer at this
  rank's sites, :mod:`lattice_hpc.flows.u1`).  Backward: the sum over the ranks of the
  gradients, since rank ``r``'s partial sum reaches the loss through every rank's use of it.

Layout: the ``ndim`` site axes of a tensor start at ``axis`` and stand in memory order (``t``
slowest, ``x`` fastest, as everywhere in the project, :mod:`lattice_hpc.geometry.lattice`), so
direction ``mu`` is tensor axis ``axis + ndim - 1 - mu``.  Leading axes (batch, channels) and
trailing axes (matrix indices) are carried along.

Collective: every function here is called by all ranks of the grid's communicator together, in the
same order, and so are the backward passes that contain them (every rank calls ``backward()`` on
a graph of the same structure; the flows use masks, never rank-dependent control flow).  CUDA
tensors are staged through host memory, except with a GPU-aware MPI
(``LATTICE_HPC_GPU_AWARE_MPI=1`` or ``MPICH_GPU_SUPPORT_ENABLED=1``), after a device synchronise.
First derivatives only (the backward is not itself differentiable across ranks).
"""

from __future__ import annotations

import functools

import numpy as np

from .halo import _gpu_aware_mpi
from .mpi import _OPS, Communicator


def _torch():
    import torch

    return torch


def _host(t):
    """A contiguous host NumPy copy (or view) of tensor ``t``, for MPI (a CUDA tensor is
    synchronised and copied to the host)."""
    t = t.detach().contiguous()
    if t.is_cuda:
        _torch().cuda.synchronize(t.device)
        t = t.cpu()
    return t.numpy()


def _exchange(grid, send, dest: int, source: int, tag: int):
    """``MPI_Sendrecv`` of tensor ``send`` to ``dest``; returns the tensor received from ``source``
    (CUDA tensors go to MPI directly with a GPU-aware MPI, else through host memory)."""
    torch = _torch()
    if send.is_cuda and _gpu_aware_mpi():  # pragma: no cover - GPU-aware MPI only
        sbuf = send.detach().contiguous()
        torch.cuda.synchronize(sbuf.device)
        rbuf = torch.empty_like(sbuf)
        grid.sendrecv(sbuf, dest, rbuf, source, tag)
        return rbuf
    sbuf = _host(send)
    rbuf = np.empty_like(sbuf)
    grid.sendrecv(sbuf, dest, rbuf, source, tag)
    return torch.from_numpy(rbuf).to(send.device)


def _tags(mu: int, backward: bool):
    base = 4 * mu + (2 if backward else 0) + 100
    return base, base + 1


@functools.cache
def _functions():
    """The autograd functions of this module, built on first use (so that importing
    :mod:`lattice_hpc.comm` does not import torch)."""
    torch = _torch()

    class PadPartitioned(torch.autograd.Function):
        """Pad axis ``ax`` (direction ``mu``, partitioned) by ``h`` sites from the neighbours."""

        @staticmethod
        def forward(ctx, x, grid, mu, ax, h):
            ctx.grid, ctx.mu, ctx.ax, ctx.h = grid, mu, ax, h
            L = x.shape[ax]
            up = [0] * grid.ndim
            up[mu] = 1
            r_up, r_down = grid.rank_at(up), grid.rank_at([-v for v in up])
            ctx.ranks = r_up, r_down
            t_hi, t_lo = _tags(mu, False)
            # my top slab -> the block above; the block below's top slab -> my lower halo
            lower = _exchange(grid, x.narrow(ax, L - h, h), r_up, r_down, t_hi)
            upper = _exchange(grid, x.narrow(ax, 0, h), r_down, r_up, t_lo)
            return torch.cat([lower, x, upper], dim=ax)

        @staticmethod
        def backward(ctx, g):
            grid, ax, h = ctx.grid, ctx.ax, ctx.h
            r_up, r_down = ctx.ranks
            L = g.shape[ax] - 2 * h
            t_hi, t_lo = _tags(ctx.mu, True)
            # the gradient in my lower halo belongs to the block below's top slab, ...
            to_top = _exchange(grid, g.narrow(ax, 0, h), r_down, r_up, t_hi)
            to_bottom = _exchange(grid, g.narrow(ax, L + h, h), r_up, r_down, t_lo)
            gx = g.narrow(ax, h, L).clone()
            gx.narrow(ax, L - h, h).add_(to_top)
            gx.narrow(ax, 0, h).add_(to_bottom)
            return gx, None, None, None, None

    class SumOverRanks(torch.autograd.Function):
        """Forward: the sum over the ranks; backward: the identity."""

        @staticmethod
        def forward(ctx, x, comm):
            return allreduce_tensor(x, comm)

        @staticmethod
        def backward(ctx, g):
            return g, None

    class SharedSumOverRanks(torch.autograd.Function):
        """Forward: the sum over the ranks; backward: the sum over the ranks of the gradients."""

        @staticmethod
        def forward(ctx, x, comm):
            ctx.comm = comm
            return allreduce_tensor(x, comm)

        @staticmethod
        def backward(ctx, g):
            return allreduce_tensor(g.contiguous(), ctx.comm), None

    return PadPartitioned, SumOverRanks, SharedSumOverRanks


def halo_pad(x, grid, depth: int, axis: int, directions=None):
    """Collective: ``x`` with its site axes padded by ``depth`` on both sides (periodic lattice).

    Args:
        x: a tensor whose ``grid.ndim`` site axes (memory order) start at ``axis``.
        grid: the :class:`~lattice_hpc.comm.CartGrid` of the lattice.
        depth: halo depth ``h``, at most the local extent of every padded direction.
        directions: the directions to pad (default: all).

    Entry ``x_pad[..., h + i_t, ..., h + i_x, ...]`` is ``x`` at the local site ``i``; an entry at
    ``i_mu = -1`` or ``L_mu`` holds the global field at the periodically wrapped neighbour site.
    Differentiable (see the module docstring for the backward pass).
    """
    torch = _torch()
    nd = grid.ndim
    for mu in (range(nd) if directions is None else directions):
        ax = axis + nd - 1 - mu
        L = x.shape[ax]
        if not 1 <= depth <= L:
            raise ValueError(f"halo depth {depth} must be between 1 and the local extent {L} "
                             f"of direction {mu}")
        if grid.dims[mu] == 1:
            x = torch.cat([x.narrow(ax, L - depth, depth), x, x.narrow(ax, 0, depth)], dim=ax)
        else:
            x = _functions()[0].apply(x, grid, mu, ax, depth)
    return x


def sum_over_ranks(x, comm: Communicator):
    """Collective: the element-wise sum of tensor ``x`` over the ranks of ``comm``, differentiable
    (backward: the identity; see the module docstring for why that is exact)."""
    if comm.size == 1:
        return x
    return _functions()[1].apply(x, comm)


def shared_sum_over_ranks(x, comm: Communicator):
    """Collective: the element-wise sum of ``x`` over the ranks of ``comm``, for a value that every
    rank uses in its own local computation; differentiable (backward: the sum over the ranks of
    the gradients, so that with :func:`allreduce_gradients` each partial sum gets the gradient of
    every rank's use)."""
    if comm.size == 1:
        return x
    return _functions()[2].apply(x, comm)


def allreduce_tensor(x, comm: Communicator, op: str = "sum"):
    """Collective: element-wise reduction of a tensor over ``comm`` (no gradient), same device and
    dtype.  Reduced on rank 0 and broadcast, so the result is bitwise the same on every rank (a
    Metropolis decision taken from it is the same everywhere)."""
    torch = _torch()
    if comm.size == 1:
        return x.detach().clone()
    buf = np.ascontiguousarray(_host(x))
    out = np.empty_like(buf)
    comm.mpi.Reduce(buf, out, op=_OPS[op], root=0)
    comm.mpi.Bcast(out, root=0)
    return torch.from_numpy(out).to(x.device)


def allreduce_gradients(parameters, comm: Communicator) -> None:
    """Collective: replace every parameter's ``.grad`` by its sum over the ranks of ``comm``.

    One reduction of all gradients packed into one buffer (a missing gradient counts as zero), so
    that data-parallel replicas and the blocks of a domain-decomposed sample together give the
    gradient of the global loss; through :func:`allreduce_tensor`, so the gradients, and the
    weights updated from them, are bitwise equal on every rank."""
    torch = _torch()
    params = list(parameters)
    if comm.size == 1 or not params:
        return
    flat = allreduce_tensor(torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p))
                                       .reshape(-1) for p in params]), comm)
    i = 0
    for p in params:
        n = p.numel()
        p.grad = flat[i:i + n].view_as(p).clone()
        i += n


def broadcast_tensor(x, comm: Communicator, root: int = 0):
    """Collective: the tensor of rank ``root`` on every rank (same shape and dtype everywhere)."""
    torch = _torch()
    if comm.size == 1:
        return x
    buf = np.array(_host(x))  # a writable copy: the received data lands in it
    comm.mpi.Bcast(buf, root=root)
    return torch.from_numpy(buf).to(x.device)
