"""The PyTorch side of the ndflow benchmarks, run as its own subprocess.

    .venv/bin/python bench/peer_torch.py info     # version + quick sgemm, then exit
    .venv/bin/python bench/peer_torch.py serve    # answer commands on stdin

Protocol (bench/bench_util.h): first line "hello torch=<version|none> threads=N",
then for each command line "result v1 v2 ..." (seconds per call, one per
sample) or "error <message>". Commands:

    sgemm_check                    GFLOP/s of a 1024^3 sgemm on 2 threads, best of 10
    matmul <n> <calls> <samples>   torch.matmul of two n x n f32 matrices
    add <n> <calls> <samples>      torch.add of two n x n f32 tensors (n=1: 1 element), no grad
    noop <calls> <samples>         a two-argument builtin C call (Python call overhead)
    softmax_ce <calls> <samples>   cross_entropy forward+backward, logits 128 x 10
    quit

The thread count comes from NDFLOW_PEER_THREADS (also set as OMP_NUM_THREADS
by the caller before torch is imported). Run with PYTHONUNBUFFERED=1.
"""
import operator
import os
import sys
import time


def main():
    threads = int(os.environ.get("NDFLOW_PEER_THREADS", os.environ.get("OMP_NUM_THREADS", "1")))
    try:
        import torch
    except ImportError:
        print("hello torch=none", flush=True)
        return 0
    torch.set_num_threads(threads)
    print(f"hello torch={torch.__version__} threads={torch.get_num_threads()}", flush=True)
    mode = sys.argv[1] if len(sys.argv) > 1 else "serve"
    if mode == "info":
        print(f"result {sgemm_check(torch, threads)}", flush=True)
        return 0
    warm = set()
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "quit":
            break
        try:
            out = run(torch, words, warm, threads)
            print("result " + " ".join(f"{v:.9g}" for v in out), flush=True)
        except Exception as e:  # report, keep serving
            print(f"error {type(e).__name__}: {e}".replace("\n", " "), flush=True)
    return 0


def timed(fn, calls, samples):
    """Seconds per call of fn, one figure per batch of `calls` calls."""
    out = []
    for _ in range(samples):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        out.append((time.perf_counter() - t0) / calls)
    return out


def sgemm_check(torch, threads):
    torch.set_num_threads(2)
    n = 1024
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        torch.matmul(a, b)
    best = min(timed(lambda: torch.matmul(a, b), 1, 10))
    torch.set_num_threads(threads)
    return 2.0 * n**3 / best / 1e9


def run(torch, words, warm, threads):
    cmd, args = words[0], [int(w) for w in words[1:]]
    if cmd == "sgemm_check":
        return [sgemm_check(torch, threads)]
    if cmd == "matmul":
        n, calls, samples = args
        a, b = torch.randn(n, n), torch.randn(n, n)
        fn = lambda: torch.matmul(a, b)
    elif cmd == "add":
        n, calls, samples = args
        shape = (1,) if n == 1 else (n, n)
        a, b = torch.randn(shape), torch.randn(shape)
        add = torch.add
        fn = lambda: add(a, b)
    elif cmd == "noop":
        # A two-argument builtin C function called the same way as torch.add
        # above: its time is Python's share of that call.
        calls, samples = args
        a, b, noop = object(), object(), operator.is_
        fn = lambda: noop(a, b)
    elif cmd == "softmax_ce":
        calls, samples = args
        gen = torch.Generator().manual_seed(0)
        logits = torch.randn(128, 10, generator=gen).requires_grad_()
        labels = torch.randint(0, 10, (128,), generator=gen)
        ce = torch.nn.functional.cross_entropy

        def fn():
            ce(logits, labels).backward()
            logits.grad = None
    else:
        raise ValueError(f"unknown command {cmd!r}")
    key = (cmd, tuple(args[:-2]))
    # "add" is timed without grad recording, like ndflow's NoGradGuard.
    with torch.set_grad_enabled(cmd != "add"):
        if key not in warm:  # first call: allocation, oneDNN/BLAS setup
            for _ in range(3 if cmd == "matmul" else 200):
                fn()
            warm.add(key)
        return timed(fn, calls, samples)


if __name__ == "__main__":
    sys.exit(main())
