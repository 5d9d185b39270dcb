"""Batch systems: machine profiles (:mod:`.profiles`), batch scripts (:mod:`.script`),
``lattice-hpc submit`` (:mod:`.submit`) and the end of a chain of segments (:mod:`.chain`)."""
