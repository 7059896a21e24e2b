"""Starts a fresh 2-rank mpirun job from a single-process test run, for the
fault tests (a stalled or dead rank must end its own job, not the suite's)."""
import os
import subprocess
import sys
import time


def run_job(script, args, env_extra, ranks=2, timeout=120):
    """Runs `python script *args` under mpirun; returns (process, seconds, stdout + stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMPI_", "PMIX_", "PMI_", "MV2_"))}
    env.pop("NDFLOW_MPI", None)
    env.update(env_extra)
    cmd = ["mpirun", "--oversubscribe", "--mca", "btl_vader_single_copy_mechanism", "none", "-np", str(ranks)]
    if os.geteuid() == 0:
        cmd.append("--allow-run-as-root")
    t0 = time.time()
    p = subprocess.run(cmd + [sys.executable, str(script)] + [str(a) for a in args], env=env,
                       capture_output=True, text=True, timeout=timeout)
    return p, time.time() - t0, p.stdout + p.stderr
