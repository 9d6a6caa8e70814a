"""Concurrent users against the app: how long the last of N waits compared with one alone.

    python bench/load.py --users 16 --tokens 64 --out runs/bench/load.json
    python bench/load.py --users 4 --tokens 8 --adapter DIR --out /tmp/load.json    # smoke

Starts `app.py` on a free local port (the shipped default unless --adapter/--model), waits for
it, then:
1. single: one user's /generate request alone, median of --repeats (after one warm-up);
2. N users start together (a barrier), each sending --requests /generate requests in turn;
   latency = from the common start to each request's answer for the first request, from its
   own send time for later ones. Reports p50/p95 over all requests, the time the last user
   finished (last_s, from the common start), and errors.
Stops the app and writes --out. Requests use no seed, so the app batches them together.
"""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from ric.artifacts import write_json
from ric.runlog import machine_info

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = [
    "Write a detailed story about a lighthouse keeper who finds a message in a bottle.",
    "Explain in detail how a bicycle works, part by part.",
    "Describe a busy market in a city you love, with all its sounds and smells.",
    "Give me a long list of tips for learning to cook at home.",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(args, port: int, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, str(ROOT / "app.py"), "--port", str(port), "--host", "127.0.0.1"]
    for flag in ("adapter", "model", "backend"):
        if getattr(args, flag):
            cmd += [f"--{flag}", getattr(args, flag)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    deadline = time.time() + args.start_timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"load: the app exited ({proc.returncode}); see {log}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"load: the app did not start within {args.start_timeout} s; see {log}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--users", type=int, default=16)
    p.add_argument("--requests", type=int, default=1, help="requests per user, one after another")
    p.add_argument("--tokens", type=int, default=64, help="max_new_tokens of every request")
    p.add_argument("--repeats", type=int, default=3, help="single-user requests timed")
    p.add_argument("--weights", default="0.5,0.5", help="one per reward of the served model")
    p.add_argument("--adapter", default=None)
    p.add_argument("--model", default=None)
    p.add_argument("--backend", default=None, help="the app's --backend (default: its own)")
    p.add_argument("--start-timeout", type=float, default=300)
    p.add_argument("--out", default="runs/bench/load.json")
    args = p.parse_args(argv)

    from gradio_client import Client

    port = free_port()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    log = out.with_suffix(".app.log")
    app = start_app(args, port, log)
    try:
        url = f"http://127.0.0.1:{port}/"
        client = Client(url, verbose=False)
        weights = [float(x) for x in args.weights.split(",")]

        def ask(c, k: int):
            return c.predict(
                PROMPTS[k % len(PROMPTS)], weights, None, args.tokens, None, api_name="/generate"
            )

        ask(client, 0)  # warm-up
        singles = []
        for k in range(args.repeats):
            t0 = time.perf_counter()
            ask(client, k)
            singles.append(time.perf_counter() - t0)

        clients = [Client(url, verbose=False) for _ in range(args.users)]
        latencies, errors, finished = [], [], []
        lock = threading.Lock()
        start = [0.0]  # set once, by the barrier, before any user is released
        barrier = threading.Barrier(
            args.users, action=lambda: start.__setitem__(0, time.perf_counter())
        )

        def user(i: int) -> None:
            barrier.wait()
            for r in range(args.requests):
                t0 = start[0] if r == 0 else time.perf_counter()
                try:
                    ask(clients[i], i + r)
                    with lock:
                        latencies.append(time.perf_counter() - t0)
                except Exception as e:  # counted, and the first few kept for the report
                    with lock:
                        errors.append(f"{type(e).__name__}: {e}"[:200])
            with lock:
                finished.append(time.perf_counter())

        threads = [threading.Thread(target=user, args=(i,)) for i in range(args.users)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        lat = sorted(latencies)
        result = {
            "users": args.users,
            "requests_per_user": args.requests,
            "tokens": args.tokens,
            "single_s": statistics.median(singles),
            "last_s": max(finished) - start[0],
            "p50_s": statistics.median(lat) if lat else None,
            "p95_s": lat[min(len(lat) - 1, int(0.95 * len(lat)))] if lat else None,
            "errors": len(errors),
            "error_samples": errors[:5],
            "machine": machine_info(),
            "command": "python bench/load.py "
            + " ".join(argv if argv is not None else sys.argv[1:]),
        }
        result["last_over_single"] = result["last_s"] / result["single_s"]
    finally:
        app.terminate()
        try:
            app.wait(timeout=30)
        except subprocess.TimeoutExpired:
            app.kill()
    write_json(out, result)
    print(
        f"{args.users} users x {args.requests}: single {result['single_s']:.2f} s, last "
        f"{result['last_s']:.2f} s ({result['last_over_single']:.1f}x), p50 "
        f"{result['p50_s']:.2f} s, p95 {result['p95_s']:.2f} s, errors {result['errors']}"
    )
    print(f"written {out}")


if __name__ == "__main__":
    main()
