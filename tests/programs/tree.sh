#!/bin/bash
# A shell wrapper that leaves a process tree behind, as real ones do (background jobs, a
# nested shell, a setsid daemon, Python multiprocessing); records every pid and waits.
# Run by tests/tests/programs.rs.
d="$PIDFILE_DIR/$SWEEP_TRIAL-$SWEEP_ATTEMPT"
mkdir -p "$d"
sleep 300 & echo $! > "$d/bg"
bash -c 'sleep 301 & echo $! > "$1/nested"; wait' nested "$d" & echo $! > "$d/bash"
setsid sleep 302 & echo $! > "$d/setsid"
D="$d" python3 -c '
import multiprocessing, os, time
def sleeper():
    time.sleep(303)
if __name__ == "__main__":
    ps = [multiprocessing.Process(target=sleeper) for _ in range(2)]
    for p in ps:
        p.start()
    with open(os.environ["D"] + "/mp.tmp", "w") as f:
        f.write(" ".join(str(p.pid) for p in ps))
    os.rename(os.environ["D"] + "/mp.tmp", os.environ["D"] + "/mp")
    time.sleep(304)
' & echo $! > "$d/py"
wait
