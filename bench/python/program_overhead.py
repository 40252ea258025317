"""What running a program under a sweep worker costs, against the same program run bare.

    python3 bench/python/program_overhead.py [--bin target/release] [--trials 20] [--logs 20000]

Starts `coordinator serve` and one `worker --allow-programs --slots 1` on loopback, then:
1. per trial: a sweep of N trials of a program that imports wandb, calls wandb.init, logs the
   metric once and exits; the worker's own time from lease to completion, against the same
   program started bare (`python3 prog.py`, without a worker: wandb reports nothing);
2. per wandb.log call: one trial that logs M rows without the metric (each row a line on the
   report pipe) and one that logs M rows with it (each row a Report to the coordinator, which
   answers before the row's step counts), timed inside the program, against the same loop bare.
Prints medians, and each figure beside the bare one as a ratio.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

PROG = r'''
import sys, time
t0 = time.perf_counter()
import wandb
mode, n = sys.argv[1], int(sys.argv[2])
wandb.init()
if mode == "first":
    wandb.log({"m": 1.0})
else:
    key = "m" if mode == "metric" else "other"
    t = time.perf_counter()
    for i in range(n):
        wandb.log({key: float(i), "epoch": i})
    per = (time.perf_counter() - t) / n
    print("PER_LOG_US %.3f" % (per * 1e6), flush=True)
    wandb.log({"m": 0.0})
wandb.finish()
print("TOTAL_MS %.3f" % ((time.perf_counter() - t0) * 1e3), flush=True)
'''


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, universal_newlines=True, **kw).stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release")
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--logs", type=int, default=20000)
    a = ap.parse_args()
    coord, worker = os.path.join(a.bin, "coordinator"), os.path.join(a.bin, "worker")
    shim = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "clients", "python")
    d = tempfile.mkdtemp(prefix="sweep-bench-prog-")
    with open(os.path.join(d, "prog.py"), "w") as f:
        f.write(PROG)
    port = 50000 + os.getpid() % 10000
    url = "http://127.0.0.1:%d" % port
    srv = subprocess.Popen([coord, "serve", "--listen", "127.0.0.1:%d" % port, "--store", os.path.join(d, "s.db")],
                           stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    wrk = subprocess.Popen([worker, "--coordinator", url, "--slots", "1", "--allow-programs", "--quiet-programs",
                            "--workdir", d], stderr=subprocess.DEVNULL)
    try:
        def trial(sid, n):
            return json.loads(run([coord, "trial", sid, str(n), "--json", "--coordinator", url]))

        # 1. per trial
        def cmd_sweep(mode, n, count):
            cfg = {"program": "prog.py", "command": ["python3", "${program}", mode, str(n), "${args}"],
                   "method": "grid", "metric": {"name": "m"},
                   "parameters": {"i": {"values": list(range(count))}}}
            path = os.path.join(d, "cfg.json")
            with open(path, "w") as f:
                json.dump(cfg, f)
            sid = run([coord, "submit", path, "--coordinator", url]).strip()
            run([coord, "watch", sid, "--coordinator", url], stderr=subprocess.DEVNULL)
            return sid, json.loads(run([coord, "leaderboard", sid, "--json", "--coordinator", url]))

        sid, lb = cmd_sweep("first", 0, a.trials)
        ours = sorted(t["duration_seconds"] * 1e3 for t in lb["trials"])
        env = dict(os.environ, PYTHONPATH=shim)
        bare = []
        for i in range(a.trials):
            t = time.perf_counter()
            subprocess.run(["python3", "prog.py", "first", "0", "--i=%d" % i], cwd=d, env=env, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            bare.append((time.perf_counter() - t) * 1e3)
        mo, mb = statistics.median(ours), statistics.median(bare)
        print("per trial (lease to completion, %d trials): %.1f ms under the worker, %.1f ms bare "
              "(spawn to exit): %.2fx, +%.1f ms" % (a.trials, mo, mb, mo / mb, mo - mb))

        # 2. per wandb.log
        def per_log(mode):
            sid, _ = cmd_sweep(mode, a.logs, 1)
            out = trial(sid, 1)["output"]
            return float(out.split("PER_LOG_US ")[1].split()[0])

        other, metric = per_log("other"), per_log("metric")
        bare_out = subprocess.run(["python3", "prog.py", "other", str(a.logs), "--i=0"], cwd=d, env=env,
                                  check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  universal_newlines=True).stdout
        bare_log = float(bare_out.split("PER_LOG_US ")[1].split()[0])
        print("per wandb.log (%d rows): %.1f us a row without the metric (a pipe line), %.1f us a row "
              "with it (a Report answered by the coordinator), %.1f us bare (no worker: nothing sent); "
              "ratios %.2fx and %.2fx" % (a.logs, other, metric, bare_log, other / bare_log, metric / bare_log))
    finally:
        wrk.terminate()
        srv.terminate()
        wrk.wait()
        srv.wait()


if __name__ == "__main__":
    sys.exit(main())
