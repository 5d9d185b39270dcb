"""Input and output of gauge fields: community file formats and checkpoints.

- :mod:`.gaugefile`  -- :func:`read_gauge` / :func:`write_gauge`: format detection, parallel block
  reads and writes, checksum and header verification (the entry point for ``measure``/``convert``);
- :mod:`.nersc`, :mod:`.ildg` (with :mod:`.lime`), :mod:`.milc`, :mod:`.openqcd`, :mod:`.hdf5`
  -- one module per format: header parsing, checksum rules, writers;
- :mod:`.checkpoint` -- parallel HDF5 checkpoints (field, RNG, chain state, provenance, blobs),
  atomic writes, keep-last-K and fallback on restart;
- :mod:`.checksums`  -- SciDAC, NERSC and MILC checksums, computed per block and reduced;
- :mod:`.sites`      -- site-major blocks, the bridge between fields and file layouts.

Communication goes through :mod:`lattice_hpc.comm` (``BlockFile``, ``open_h5`` and reductions).
"""

from .checkpoint import Checkpoint, CheckpointMismatch, CheckpointStore, read_checkpoint, \
    write_checkpoint
from .gaugefile import FORMATS, FileInfo, GaugeConfig, read_gauge, write_gauge

__all__ = ["Checkpoint", "CheckpointMismatch", "CheckpointStore", "read_checkpoint",
           "write_checkpoint", "FORMATS", "FileInfo", "GaugeConfig", "read_gauge", "write_gauge"]
