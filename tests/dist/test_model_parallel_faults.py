"""Faults in a model-parallel program (layers on worker 0 and worker 1,
joined by send/recv over MPI): a rank that stalls mid-step makes the other
fail within the rendezvous timeout with an error naming the stalled worker
and the transfer's key, and a rank that exits mid-run ends the whole job
non-zero within 30 s. Each test starts its own 2-rank job from the
single-process run."""
import re
import shutil
import textwrap

import pytest

import ndflow.distributed as dist
from own_job import run_job

SCRIPT = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    import ndflow as nd, ndflow.distributed as dist, ndflow.nn as nn
    dist.init()
    R = dist.get_rank()
    mode, at = sys.argv[1], int(sys.argv[2])
    l1, l2 = nn.Linear(4, 8), nn.Linear(8, 2)

    @nd.function
    def f(x):
        with nd.device("worker:0/cpu:0"):
            h = l1(x).relu()
        with nd.device("worker:1/cpu:0"):
            return l2(h)

    x = nd.tensor(np.ones((3, 4), np.float32))
    for step in range(3):
        if R == 1 and step == at:
            if mode == "stall":
                time.sleep(40)                      # far past the others' timeout
            else:
                os._exit(3)                         # dies without a word
        t0 = time.time()
        try:
            f(x)
        except Exception:
            print(f"rank {R} failed after {time.time() - t0:.1f} s", flush=True)
            raise                                   # the excepthook aborts the job
        print(f"rank {R} passed step {step}", flush=True)
""")


def launch(tmp_path, mode, at):
    script = tmp_path / "mp_fault.py"
    script.write_text(SCRIPT)
    return run_job(script, [mode, at], {"NDFLOW_RENDEZVOUS_TIMEOUT": "2"})


needs_own_job = [
    pytest.mark.skipif(dist.get_world_size() > 1, reason="starts its own 2-rank job from the single-process run"),
    pytest.mark.skipif(shutil.which("mpirun") is None, reason="needs mpirun"),
]


@needs_own_job[0]
@needs_own_job[1]
def test_a_stalled_worker_is_named_within_the_timeout(tmp_path):
    p, elapsed, out = launch(tmp_path, "stall", 1)
    assert p.returncode != 0, out
    assert elapsed < 30, f"the job took {elapsed:.0f} s: the stalled rank was waited for\n{out}"
    assert "rank 0 passed step 0" in out and "rank 1 passed step 0" in out, out
    m = re.search(r"rank 0 failed after ([0-9.]+) s", out)
    assert m and 1.9 <= float(m.group(1)) < 8, out
    # The error names the peer and the key of the transfer it waited for.
    assert re.search(r"worker 1", out) and re.search(r"/worker:1/cpu:0;/worker:0/cpu:0;[^;]+;1", out), out
    assert "TimeoutError" in out, out


@needs_own_job[0]
@needs_own_job[1]
def test_a_worker_that_exits_ends_the_job(tmp_path):
    p, elapsed, out = launch(tmp_path, "exit", 1)
    assert p.returncode != 0, out
    assert elapsed < 30, f"the job took {elapsed:.0f} s\n{out}"
    assert "rank 1 passed step 1" not in out, out
