"""tests/dist runs under mpirun (tools/run_dist_tests.sh: 2 and 4 ranks), and
also as a plain process (a world of one). Every rank runs every test in the
same order; a test that fails on one rank aborts the whole job (MPI_Abort),
since the other ranks would otherwise wait forever in their next collective."""
import sys

import pytest

import ndflow
import ndflow.distributed as dist

dist.init()


@pytest.fixture(autouse=True)
def _ndflow_state():
    ndflow._C.set_grad_enabled(True)
    ndflow.manual_seed(0)
    yield
    ndflow._C.set_grad_enabled(True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and dist.get_world_size() > 1:
        print(f"\n[rank {dist.get_rank()}] {item.nodeid} failed:\n{report.longreprtext}", file=sys.stderr, flush=True)
        dist.abort(f"test {item.nodeid} failed on rank {dist.get_rank()}")
