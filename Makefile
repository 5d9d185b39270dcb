# The two commands of the README.  Each installs what is missing first (tools/install.sh skips what
# is already there), then runs.
NP ?= 2
JOB ?= jobs/flow_u1_b2.0_8x8.toml

.PHONY: run test install bench

install:
	bash tools/install.sh

run: install
	mpirun -n $(NP) lattice-hpc run $(JOB)

test: install
	bash tools/run_tests.sh

bench: install
	mpirun -n 2 lattice-hpc bench halo
	mpirun -n 2 lattice-hpc bench io
	lattice-hpc bench plaquette
