"""One rank of a trial across several workers, as a torchrun-style program sees it.

Rank 0 listens on MASTER_PORT and waits for every other rank to connect and say hello; each
other rank connects to MASTER_ADDR:MASTER_PORT (retrying while rank 0 starts), says who it is,
and reads rank 0's answer. Each writes what it learned to $SWEEP_TEST_MARKS/a<attempt>-r<rank>.
On the trial's first attempt both then wait (`hold` seconds), so a test can kill a member;
rank 0 logs `acc` and how many ranks it heard from.
"""

import os
import socket
import time

import wandb

rank = int(os.environ["RANK"])
size = int(os.environ["WORLD_SIZE"])
addr = os.environ["MASTER_ADDR"]
port = int(os.environ["MASTER_PORT"])
attempt = int(os.environ["SWEEP_ATTEMPT"])
marks = os.environ["SWEEP_TEST_MARKS"]
run = wandb.init()
hold = float(run.config.get("hold", 0)) if attempt == 1 else 0.0


def mark(text):
    path = os.path.join(marks, f"a{attempt}-r{rank}")
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.rename(path + ".tmp", path)


if rank == 0:
    server = socket.create_server(("0.0.0.0", port))
    server.settimeout(120)
    heard = []
    for _ in range(size - 1):
        conn, _ = server.accept()
        heard.append(conn.recv(100).decode())
        conn.sendall(b"hello from rank 0")
        conn.close()
    mark(" | ".join(sorted(heard)))
    time.sleep(hold)
    wandb.log({"acc": 0.5, "ranks_heard": len(heard)})
else:
    deadline = time.time() + 120
    while True:
        try:
            conn = socket.create_connection((addr, port), timeout=5)
            break
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.1)
    conn.sendall(f"rank {rank} of {size}".encode())
    mark(conn.recv(100).decode())
    conn.close()
    time.sleep(hold)
    print(f"rank {rank} done")
