"""examples/fashion_mnist.py --distributed on the current world (every rank
calls the example's main() in-process, as mpirun would run it), eager and
graph mode: rank 0 alone prints and writes files, and a run stopped after a
checkpoint and resumed by a fresh call ends with exactly the parameters of
an uninterrupted run."""
import gzip
import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

import ndflow as nd
import ndflow.distributed as dist

ROOT = Path(__file__).resolve().parents[2]
DATA = Path("/usr/share/datasets/fashion-mnist")
R, N = dist.get_rank(), dist.get_world_size()
LIMIT, BATCH = 384, 16  # per-rank batch; an epoch is ceil(384 / N / 16) steps

pytestmark = pytest.mark.skipif(not DATA.exists(), reason="dataset-fashion-mnist is not installed (tools/setup.sh)")


def _example():
    spec = importlib.util.spec_from_file_location("fashion_mnist_example", ROOT / "examples" / "fashion_mnist.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def shared_dir():
    """A directory with the same path on every rank (they share this host)."""
    token = nd.from_numpy(np.array([np.random.default_rng().integers(1, 2**62)], dtype=np.int64))
    dist.broadcast(token, 0)
    path = Path(f"/tmp/ndflow-dist-example-{int(token.numpy()[0])}")
    if R == 0:
        path.mkdir()
    dist.barrier()
    yield path
    dist.barrier()
    if R == 0:
        shutil.rmtree(path, ignore_errors=True)


def _write_subset(root, count):
    """The first `count` images and labels of each split as IDX files (a
    gzip prefix: decompressing all 60000 images would dominate the test)."""
    for split in ("train", "t10k"):
        for kind, header, item in (("images", 16, 28 * 28), ("labels", 8, 1)):
            name = f"{split}-{kind}-idx{3 if kind == 'images' else 1}-ubyte.gz"
            with gzip.open(DATA / name, "rb") as f:
                head, body = bytearray(f.read(header)), f.read(count * item)
            head[4:8] = count.to_bytes(4, "big")  # the number of items
            with gzip.open(root / name, "wb", compresslevel=1) as f:
                f.write(bytes(head) + body)


def _params(path):
    tensors, _ = nd._C.load_tensors(str(path))
    return {k: v.numpy().copy() for k, v in tensors}


@pytest.mark.parametrize("mode", ["eager", "graph"])
def test_resumed_distributed_run_ends_with_the_uninterrupted_parameters(shared_dir, capsys, mode):
    example = _example()
    if mode == "graph" and not example._graph_data_parallel():
        pytest.skip("this build has no graph data-parallel pass")
    steps_per_epoch = -(-LIMIT // N // BATCH)
    stop = steps_per_epoch + 3  # inside the second epoch: the sampler epoch and loader position matter
    data_root = shared_dir / "data"
    if R == 0:
        data_root.mkdir()
        _write_subset(data_root, LIMIT)
    dist.barrier()
    base = ["--distributed", "--mode", mode, "--data-root", str(data_root), "--epochs", "2", "--batch-size", str(BATCH), "--limit", str(LIMIT), "--threads", "1",
            "--no-progress", "--skip-export", "--out-dir", str(shared_dir), "--bucket-mb", "0.05"]
    want, got, ckpt = shared_dir / "want.ndf", shared_dir / "got.ndf", shared_dir / "ck.ndf"

    history = example.main(base + ["--save-params", str(want)])
    printed = capsys.readouterr().out
    assert ("epoch 2: train loss" in printed) == (R == 0)  # rank 0 alone prints
    assert R == 0 or printed == ""
    assert len(history["step_loss"]) == 2 * steps_per_epoch
    assert want.exists() and (shared_dir / f"curves_{mode}.png").exists()
    # main() itself checks that every replica ends equal to rank 0's.
    assert R != 0 or N == 1 or "all replicas hold the same parameters" in printed

    example.main(base + ["--checkpoint-every", str(stop), "--checkpoint", str(ckpt), "--max-steps", str(stop)])
    assert "stopped after step" in capsys.readouterr().out or R != 0
    resumed = example.main(base + ["--resume", str(ckpt), "--save-params", str(got)])
    printed = capsys.readouterr().out
    assert R != 0 or f"resumed from {ckpt} at step {stop} (epoch 2, batch 3)" in printed

    a, b = _params(want), _params(got)
    assert a.keys() == b.keys() and len(a) == 6
    for k in a:
        # Bit-identical: the resumed run repeats exactly the same kernels,
        # allreduces (same inputs, same MPI algorithm) and data order.
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    np.testing.assert_allclose(resumed["step_loss"], history["step_loss"], rtol=0, atol=0)
    np.testing.assert_array_equal(resumed["test_acc"], history["test_acc"])


def test_graph_mode_without_the_graph_pass_is_a_clear_error():
    example = _example()
    if example._graph_data_parallel():
        pytest.skip("this build has the graph data-parallel pass: graph mode is tested above")
    with pytest.raises(SystemExit, match="--mode eager"):
        example.main(["--distributed", "--mode", "graph", "--limit", "64"])
