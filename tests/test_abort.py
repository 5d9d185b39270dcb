"""An exception on one rank of a 2-rank run ends the whole job with a non-zero exit, quickly."""

import subprocess
import sys
import textwrap
import time

SCRIPT = textwrap.dedent("""
    from lattice_hpc.comm import world, install_abort_handler
    install_abort_handler()
    comm = world()
    if comm.rank == 1:
        raise ValueError("deliberate failure on rank 1")
    comm.barrier()  # rank 0 would wait here forever without the abort
    print("rank 0 passed the barrier")
""")


def test_exception_on_one_rank_aborts_the_job(tmp_path):
    """mpirun comes with tools/install.sh; without it this test fails rather than skips."""
    script = tmp_path / "fail.py"
    script.write_text(SCRIPT)
    start = time.time()
    proc = subprocess.run(["mpirun", "-n", "2", sys.executable, str(script)],
                          capture_output=True, text=True, timeout=60)
    elapsed = time.time() - start
    assert proc.returncode != 0
    assert elapsed < 30, f"took {elapsed:.1f} s"
    assert "deliberate failure on rank 1" in proc.stderr
    assert "[rank 1/2]" in proc.stderr
    assert "passed the barrier" not in proc.stdout
