"""Gauge-equivariant normalizing flows on the decomposed lattice, and exact sampling with them.

Modules, bottom to top (each calls only those above it in this list, and :mod:`lattice_hpc.comm`
for its halos and sums):

- :mod:`.splines`, :mod:`.ncp` -- bijections of an interval and of the circle with exact
  log-Jacobians (rational-quadratic splines, mixtures of non-compact projections);
- :mod:`.spectral` -- conjugation-equivariant maps of SU(N) matrices through their eigenphases;
- :mod:`.geometry` -- the block of the lattice as torch sees it (layout, device, halos);
- :mod:`.masks` -- the stripe masks of the coupling layers (2D and 4D), and their tiling check;
- :mod:`.loops` -- plaquettes, staples, actions and the U(1) charge of torch link tensors;
- :mod:`.conv` -- periodic convolutions over the global lattice (halo exchanges, not wrapping);
- :mod:`.u1`, :mod:`.sun` -- the U(1) plaquette and SU(N) loop coupling layers;
- :mod:`.prior` -- Haar prior from the counter-based generator (grid-independent samples);
- :mod:`.model` -- :class:`GaugeFlow`, the stack of layers and its densities;
- :mod:`.modelfile` -- model files (HDF5 datasets and attributes, no pickle);
- :mod:`.fermions` -- fermion actions of torch link tensors as autograd functions over the
  project's Dirac operator, solvers and fermion force (pseudofermion action, exact log det);
- :mod:`.determinant` -- the two-flavour determinant in the loss and the chain, three ways;
- :mod:`.train` -- reverse Kullback-Leibler self-training, data and domain parallel;
- :mod:`.mcmc` -- independence Metropolis-Hastings with the flow as proposal.

Direction and sign: ``U = f(z)``, ``log q(U) = log r(z) - log|det J_f(z)|`` (:mod:`.model`).
"""
