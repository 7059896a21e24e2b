"""A bag-of-embeddings classifier whose embedding table lives on the
parameter server and travels by rows: each step pulls only the rows its
batch uses and pushes only their updates (ndflow.distributed.ps).

    python examples/sparse_embedding.py                                  # one worker, in-process server
    tools/ndflow-launch --servers 2 --workers 4 -- .venv/bin/python examples/sparse_embedding.py --sync ssp:2

Synthetic data: every class owns a few "topic" tokens out of a large
vocabulary; a bag is a few of its class's topic tokens mixed with random
ones. A 50,000 x 16 table is 3.2 MB (split by rows over the servers), yet a
step of 64 bags moves only the few hundred rows they touch, fewer still when
the worker's cache holds rows the consistency model lets it reuse.
"""
import argparse
import time

import numpy as np

import ndflow as nd
import ndflow.distributed.ps as ps
import ndflow.nn.functional as F


def make_data(rng, n, vocab, classes, bag, topic_tokens):
    topics = rng.choice(vocab, size=(classes, topic_tokens), replace=False)
    y = rng.integers(0, classes, n)
    topical = topics[y[:, None], rng.integers(0, topic_tokens, (n, bag // 2))]
    noise = rng.integers(0, vocab, (n, bag - bag // 2))
    return np.concatenate([topical, noise], axis=1).astype(np.int64), y.astype(np.int64)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sync", default="bsp", help="bsp, asp or ssp:N")
    p.add_argument("--vocab", type=int, default=50000)
    p.add_argument("--dim", type=int, default=16)
    p.add_argument("--classes", type=int, default=4)
    p.add_argument("--bag", type=int, default=10, help="tokens per bag")
    p.add_argument("--batch-size", type=int, default=64, help="bags per step per worker")
    p.add_argument("--steps", type=int, default=300, help="steps per worker")
    p.add_argument("--lr", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    ps.init()
    nd.manual_seed(args.seed)
    tables = {"embedding": nd.randn((args.vocab, args.dim)) * 0.1,
              "classifier": nd.zeros((args.dim, args.classes))}
    ps.register(tables, sync=args.sync)  # the workers apply SGD; servers accumulate what they push
    if ps.is_server():
        ps.serve()
        return None
    worker, workers = ps.rank(), ps.num_workers()
    rng = np.random.default_rng(args.seed)  # the same topics everywhere; each worker its own bags
    x_all, y_all = make_data(rng, args.steps * args.batch_size * workers + 2000, args.vocab, args.classes,
                             args.bag, topic_tokens=20)
    x_test, y_test = x_all[-2000:], y_all[-2000:]
    say = print if worker == 0 else (lambda *a, **k: None)
    say(f"bag-of-embeddings: vocab {args.vocab} x dim {args.dim}, {workers} worker(s), consistency {args.sync}")
    say("embedding rows per server: " + ", ".join(f"server {s}: [{b}, {e})" for s, b, e in ps.layout("embedding")))

    rows_moved, t0 = 0, time.perf_counter()
    for step in range(args.steps):
        lo = (step * workers + worker) * args.batch_size
        x, y = x_all[lo:lo + args.batch_size], y_all[lo:lo + args.batch_size]
        ids, local = np.unique(x, return_inverse=True)  # the rows this batch touches
        ids_t = nd.tensor(ids)
        rows_h, cls_h = ps.pull_rows("embedding", ids_t), ps.pull("classifier")
        rows = rows_h.wait().requires_grad_()
        cls = cls_h.wait().requires_grad_()
        bags = nd.index_select(rows, 0, nd.tensor(local.reshape(-1))).reshape((len(x), args.bag, args.dim))
        loss = F.cross_entropy(bags.mean(axis=1) @ cls, nd.tensor(y))
        loss.backward()
        scale = -args.lr / workers
        pushes = [ps.push_rows("embedding", ids_t, rows.grad * scale),
                  ps.push("classifier", cls.grad * scale)]
        for h in pushes:
            h.wait()
        ps.clock()
        rows_moved += 2 * len(ids)
        if step % 100 == 0 or step == args.steps - 1:
            say(f"step {step:4d}  loss {float(loss.item()):.4f}  rows this step {len(ids)} of {args.vocab}")
    secs = time.perf_counter() - t0

    # Test accuracy with the servers' current tables.
    ids, local = np.unique(x_test, return_inverse=True)
    rows = ps.pull_rows("embedding", nd.tensor(ids)).wait()
    cls = ps.pull("classifier").wait()
    bags = nd.index_select(rows, 0, nd.tensor(local.reshape(-1))).reshape((len(x_test), args.bag, args.dim))
    acc = float((nd.argmax(bags.mean(axis=1) @ cls, axis=1).numpy() == y_test).mean())
    say(f"test accuracy {acc * 100:.2f}% | {args.steps / secs:,.0f} steps/s per worker | "
        f"{rows_moved / secs:,.0f} rows/s moved (pull + push) per worker")
    cache = ps.cache_stats()
    say(f"worker cache: {cache['row_hits']:,} of {cache['row_hits'] + cache['row_misses']:,} rows and "
        f"{cache['hits']} of {cache['hits'] + cache['misses']} classifier pulls served without asking the servers")
    return acc


if __name__ == "__main__":
    main()
