"""One-off probe (issue 13 groundwork): which engine can full-sync as a replica of which, in a 2-node cluster
on loopback (the primary owns every slot and 301 keys; AOF on). Prints one line per pair. Run from the
checkout: `PYTHONPATH=. .venv/bin/python ci/engines/replication_matrix.py` after ci/engines/fetch.sh.
Results are in ci/engines/README.md; the tests do not run this."""

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from helm_redis.localnodes import free_ports
from tests.engines import engine

procs = []
BASE = tempfile.mkdtemp(prefix="replication-matrix-")


def start(e, d):
    d = Path(d)
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    (p,) = free_ports("127.0.0.1", 1)
    procs.append(
        subprocess.Popen(
            [
                str(e.server),
                "--bind",
                "127.0.0.1",
                "--port",
                str(p),
                "--dir",
                str(d),
                "--cluster-enabled",
                "yes",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--logfile",
                str(d / "log"),
            ]
        )
    )
    c = redis.Redis("127.0.0.1", p, decode_responses=True)
    for _ in range(100):
        try:
            c.ping()
            break
        except Exception:
            time.sleep(0.05)
    return c, p, d


def pair(a, b):
    P, _, _ = start(engine(a), f"{BASE}/{a}-p")
    R, rp, rd = start(engine(b), f"{BASE}/{a}-to-{b}")
    P.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
    for _ in range(100):
        if P.cluster("info")["cluster_state"] == "ok":
            break
        time.sleep(0.05)
    for i in range(300):
        P.set(f"k{i}", i)
    P.hset("h", mapping={"a": 1})
    P.execute_command("CLUSTER", "MEET", "127.0.0.1", rp)
    pid = P.execute_command("CLUSTER", "MYID")
    for _ in range(100):
        if pid in str(R.execute_command("CLUSTER", "NODES")) and "handshake" not in str(
            R.execute_command("CLUSTER", "NODES")
        ):
            break
        time.sleep(0.1)
    try:
        R.execute_command("CLUSTER", "REPLICATE", pid)
    except Exception as e:
        print(a, "->", b, "REPLICATE error", e)
        return
    for _ in range(80):
        if R.dbsize() == 301:
            break
        time.sleep(0.1)
    ok = R.dbsize() == 301
    print(
        f"{a} primary -> {b} replica: replica keys {R.dbsize()}/301",
        "OK"
        if ok
        else "FAIL: "
        + " | ".join(
            line for line in (rd / "log").read_text().splitlines() if "RDB" in line or "rror" in line
        )[-300:],
    )


try:
    for a, b in [
        ("redis-7.0", "valkey-9.1"),
        ("redis-7.0", "redis-8.0"),
        ("redis-7.0", "valkey-8.1"),
        ("valkey-9.1", "redis-7.0"),
        ("redis-8.0", "redis-7.0"),
        ("redis-8.0", "valkey-9.1"),
        ("valkey-8.1", "valkey-9.1"),
        ("valkey-9.1", "valkey-8.1"),
    ]:
        pair(a, b)
finally:
    for p in procs:
        p.kill()
