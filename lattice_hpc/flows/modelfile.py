"""Model files: a trained flow's weights as named HDF5 datasets, its architecture as attributes.

Layout (``format = "lattice_hpc-flow-model"``, version 1)::

    /weights/<name>   one float dataset per tensor of the model's ``state_dict`` (``/`` for ``.``)
    attrs: format, format_version, architecture (JSON: group, dims, layers, kernel, bins, hidden,
           kernel_size), beta (the action it was trained for), train_steps, precision

No pickle anywhere: a model is rebuilt from the file alone (:func:`read_model`), and any other
tool can read it with h5py.  Written by rank 0 to a temporary name, fsynced and renamed, so a
model file is complete or absent.  Reading checks the architecture, group and lattice against
the job and refuses a mismatch naming the file and the key.
"""

from __future__ import annotations

import json
import os

import numpy as np

from ..errors import FlowError
from ..io.gaugefile import os_error_text

FORMAT = "lattice_hpc-flow-model"
VERSION = 1


def write_model(path: str, flow, comm, info: dict | None = None) -> None:
    """Collective: write ``flow``'s weights and architecture to ``path`` (rank 0, atomically)."""
    state = {k: v.detach().cpu().numpy() for k, v in flow.state_dict().items()}

    def write():
        import h5py

        tmp = os.path.join(os.path.dirname(os.path.abspath(path)), f".{os.path.basename(path)}.partial")
        try:
            with h5py.File(tmp, "w") as f:
                f.attrs["format"] = FORMAT
                f.attrs["format_version"] = VERSION
                f.attrs["architecture"] = json.dumps(flow.arch, sort_keys=True)
                for k, v in (info or {}).items():
                    f.attrs[k] = json.dumps(v)
                g = f.create_group("weights")
                for k, v in state.items():
                    g.create_dataset(k.replace(".", "/"), data=v)
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except OSError as exc:
            try:
                os.remove(tmp)
            except OSError:
                pass
            raise FlowError(f"{path}: the model file could not be written ({os_error_text(exc)})") from None
    comm.on_root(write, catch=(FlowError,))


def read_model(path: str, comm) -> tuple[dict, dict, dict]:
    """Collective: ``(architecture, weights, info)`` of a model file (read by rank 0, broadcast)."""
    def read():
        import h5py

        if not os.path.isfile(path):
            raise FlowError(f"flow.model = {path}: no such model file")
        try:
            with h5py.File(path, "r") as f:
                if f.attrs.get("format") != FORMAT:
                    raise FlowError(f"{path}: not a lattice_hpc flow model file "
                                    f"(format {f.attrs.get('format')!r})")
                arch = json.loads(f.attrs["architecture"])
                from .model import ARCH_DEFAULTS

                arch = {**ARCH_DEFAULTS, **arch}
                info = {k: json.loads(v) for k, v in f.attrs.items()
                        if k not in ("format", "format_version", "architecture")}
                weights = {}

                def visit(name, obj):
                    if isinstance(obj, h5py.Dataset):
                        weights[name.replace("/", ".")] = np.asarray(obj[()])
                f["weights"].visititems(visit)
        except OSError as exc:
            raise FlowError(f"{path}: the model file could not be read ({exc})") from None
        return arch, weights, info
    return comm.on_root(read, catch=(FlowError,))


def check_architecture(path: str, arch: dict, wanted: dict) -> None:
    """Refuse a model whose architecture, group or lattice differs from the job's."""
    diffs = [f"{k}: model {arch.get(k)!r}, job {wanted.get(k)!r}" for k in sorted(wanted)
             if arch.get(k) != wanted.get(k)]
    if diffs:
        raise FlowError(f"flow.model = {path} does not fit this job ({'; '.join(diffs)})")
