"""Shared pytest setup for tests/python: every test starts with grad mode on
and the default generator freshly seeded, whatever an earlier test left."""
import pytest

try:
    import ndflow
except ImportError:  # test_data.py runs without the extension
    ndflow = None


@pytest.fixture(autouse=True)
def _ndflow_state():
    if ndflow is None or not hasattr(ndflow, "_C"):
        yield
        return
    ndflow._C.set_grad_enabled(True)
    ndflow.manual_seed(0)
    yield
    ndflow._C.set_grad_enabled(True)
