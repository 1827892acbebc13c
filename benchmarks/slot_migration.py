"""Slot migration benchmark: atomic slot migration (Valkey 9's CLUSTER MIGRATESLOTS) versus key-by-key
MIGRATE, same data, same run; key-by-key on the other engines for reference.

Each run starts three fresh loopback masters of one engine (configured as the chart's pods, no replicas),
forms them with helm_redis, writes the same data set into the slots of the first master (default 100k keys
of mixed sizes: 70% 32-byte strings, 20% 512-byte strings, 8% 10-field hashes, 2% 4 KiB strings, same
seed every run), then moves all of that master's slots to the second with helm_redis.slots.move_slots
(strategy atomic or keys). Timed: the move, until every node agrees on the new owner.
Client-seen latency: one cluster client (redis-py, following MOVED/ASK) runs SET then GET of a random
moved key in a loop during the move (bounded in count and time); each pair's time is one sample;
"idle" is the same loop for 2 s before the move. Prints medians over the runs and the ratio
atomic / key-by-key. Engines come from the tool cache (ci/engines/fetch.sh).
Usage: benchmarks/slot_migration.py [--keys 100000] [--runs 3] [--engines valkey-9.1,redis-7.0,...]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helm_redis.formation import Formation, members_from_addresses
from helm_redis.localnodes import LocalNodes
from helm_redis.nodes import Connector, read_views
from helm_redis.slots import ATOMIC, KEYS, SlotMove, move_slots
from tests.engines import Engine, engine

ENGINES = ["valkey-9.1", "redis-7.0", "redis-8.0", "valkey-8.1"]
MAX_SAMPLES = 2_000_000
MOVE_TIMEOUT = 600.0


def dataset(count: int, slots: range, seed: int = 13) -> list[tuple[str, str, object]]:
    """(key, kind, value) for `count` keys, all in `slots`, the same for every run and engine."""
    rng = random.Random(seed)
    items: list[tuple[str, str, object]] = []
    index = 0
    while len(items) < count and index < count * 10:
        key = f"bench:{index}"
        index += 1
        if key_slot(key.encode()) not in slots:
            continue
        roll = rng.random()
        if roll < 0.70:
            items.append((key, "string", "x" * 32))
        elif roll < 0.90:
            items.append((key, "string", "y" * 512))
        elif roll < 0.98:
            items.append((key, "hash", {f"f{j}": f"value-{j}-{index}" for j in range(10)}))
        else:
            items.append((key, "string", "z" * 4096))
    if len(items) < count:
        raise RuntimeError(f"only {len(items)} keys fall into slots {slots.start}-{slots.stop - 1}")
    return items


def load(client: redis.Redis, items: list[tuple[str, str, object]]) -> None:
    """Straight into the source master (all keys are in its slots), 1000 per pipeline."""
    for start in range(0, len(items), 1000):
        pipe = client.pipeline(transaction=False)
        for key, kind, value in items[start : start + 1000]:
            if kind == "hash":
                pipe.hset(key, mapping=value)  # type: ignore[arg-type]
            else:
                pipe.set(key, value)  # type: ignore[arg-type]
        pipe.execute()


class Probe(threading.Thread):
    """SET + GET through a cluster client of a key in the slot of a random moved key (`{key}:p`, so the
    data set itself is not touched); one latency sample (s) per pair. Bounded in count and time."""

    def __init__(self, nodes: LocalNodes, keys: list[str], seconds: float) -> None:
        super().__init__(daemon=True)
        self.keys, self.seconds = keys, seconds
        self.samples: list[float] = []
        self.errors = 0
        self.halt = threading.Event()
        self.client = RedisCluster(
            startup_nodes=[ClusterNode(a.host, a.port) for a in nodes.addresses],
            decode_responses=True,
            socket_timeout=10,
        )

    def run(self) -> None:
        rng = random.Random(7)
        deadline = time.monotonic() + self.seconds
        for i in range(MAX_SAMPLES):
            if self.halt.is_set() or time.monotonic() > deadline:
                break
            key = f"{{{rng.choice(self.keys)}}}:p"
            started = time.perf_counter()
            try:
                self.client.set(key, i)
                self.client.get(key)
                self.samples.append(time.perf_counter() - started)
            except Exception:  # counted; the loop goes on (redis-py can race its topology refresh)
                self.errors += 1

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=30)
        self.client.close()


@dataclass
class Result:
    engine: str
    strategy: str
    keys: int
    slots: int
    seconds: float
    samples: list[float]
    idle: list[float]
    errors: int

    @property
    def keys_per_second(self) -> float:
        return self.keys / self.seconds if self.seconds else 0.0


def percentile(samples: list[float], q: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def one_run(eng: Engine, strategy: str, items, root: Path) -> Result:
    nodes = LocalNodes(root, 3, replicas_per_master=0, server=eng.server)
    nodes.start()
    connector = Connector()
    try:
        members = members_from_addresses(nodes.addresses)
        Formation(connector, members, 3, 0, timeout=120).run()
        source, target = members[0], members[1]
        load(connector.client(source.address), items)
        views = dict(zip(members, read_views(connector, nodes.addresses), strict=True))
        slots = [s for start, end in views[source].myself.slots for s in range(start, end + 1)]
        keys = [key for key, _, _ in items]
        idle = Probe(nodes, keys, 2.0)
        idle.start()
        idle.join(timeout=30)
        idle.client.close()
        probe = Probe(nodes, keys, MOVE_TIMEOUT)
        probe.start()
        started = time.monotonic()
        moved = move_slots(connector, views, [SlotMove(s, source, target) for s in slots], strategy=strategy)
        seconds = time.monotonic() - started
        probe.stop()
        # The source, left without slots, turns into a replica of the target (and so holds its keys):
        # what counts is that the target has every key.
        target_client = connector.client(target.address)
        found = 0
        for start in range(0, len(keys), 1000):
            pipe = target_client.pipeline(transaction=False)
            for key in keys[start : start + 1000]:
                pipe.exists(key)
            found += sum(int(n) for n in pipe.execute())
        if found != len(keys):
            raise RuntimeError(f"{eng}: the target holds {found} of the {len(keys)} keys after the move")
        return Result(
            eng.name,
            strategy,
            moved or len(items),
            len(slots),
            seconds,
            probe.samples,
            idle.samples,
            probe.errors,
        )
    finally:
        connector.close()
        nodes.stop(kill=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--engines", default=",".join(ENGINES))
    args = parser.parse_args()
    names = [n for n in args.engines.split(",") if n]
    engines = [engine(name) for name in names]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{args.keys} keys, {args.runs} run(s) each, engines: {', '.join(str(e) for e in engines)}",
        flush=True,
    )
    items = dataset(args.keys, range(0, 5461))
    size = sum(
        len(v) if isinstance(v, str) else sum(len(a) + len(b) for a, b in v.items()) for _, _, v in items
    )
    print(f"data: {len(items)} keys, {size / 2**20:.1f} MiB of values, all in slots 0-5460", flush=True)
    configs = [
        (e, s) for e in engines for s in ((ATOMIC, KEYS) if e.name.startswith("valkey-9") else (KEYS,))
    ]
    results: dict[tuple[str, str], list[Result]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            for eng, strategy in configs:
                result = one_run(eng, strategy, items, Path(tmp) / f"{eng.name}-{strategy}-{run}")
                results.setdefault((eng.name, strategy), []).append(result)
                print(
                    f"  run {run + 1}: {eng.name:<10} {strategy:<6} {result.seconds:6.2f} s "
                    f"{result.keys_per_second:9.0f} keys/s  "
                    f"p99 {percentile(result.samples, 0.99) * 1e3:7.2f} ms "
                    f"max {max(result.samples, default=0) * 1e3:8.2f} ms  ({len(result.samples)} ops, "
                    f"{result.errors} errors)",
                    flush=True,
                )
    print_table(results, args.runs)


def print_table(results: dict[tuple[str, str], list[Result]], runs: int) -> None:
    def med(rs: list[Result], f) -> float:
        return statistics.median(f(r) for r in rs)

    rows = {}
    for (name, strategy), rs in results.items():
        rows[(name, strategy)] = {
            "seconds": med(rs, lambda r: r.seconds),
            "kps": med(rs, lambda r: r.keys_per_second),
            "idle50": med(rs, lambda r: percentile(r.idle, 0.5)) * 1e3,
            "p50": med(rs, lambda r: percentile(r.samples, 0.5)) * 1e3,
            "p99": med(rs, lambda r: percentile(r.samples, 0.99)) * 1e3,
            "max": med(rs, lambda r: max(r.samples, default=0.0)) * 1e3,
            "ops": med(rs, lambda r: len(r.samples)),
            "errors": med(rs, lambda r: r.errors),
        }
    header = (
        f"{'engine':<10} | {'strategy':<10} | {'duration':>8} | {'keys/s':>8} | {'idle p50':>8} | "
        f"{'p50':>7} | {'p99':>7} | {'max':>8} | {'ops':>6} | {'errors':>6}"
    )
    print(f"\nmedian of {runs} run(s); latency = one SET+GET pair of a cluster client during the move, in ms")
    print(header)
    print("-" * len(header))
    for (name, strategy), row in rows.items():
        label = "atomic" if strategy == ATOMIC else "key-by-key"
        print(
            f"{name:<10} | {label:<10} | {row['seconds']:>6.2f} s | {row['kps']:>8.0f} | "
            f"{row['idle50']:>8.3f} | "
            f"{row['p50']:>7.3f} | {row['p99']:>7.3f} | {row['max']:>8.2f} | {row['ops']:>6.0f} | "
            f"{row['errors']:>6.0f}"
        )
    for name in sorted({n for n, _ in rows}):
        if (name, ATOMIC) in rows and (name, KEYS) in rows:
            a, k = rows[(name, ATOMIC)], rows[(name, KEYS)]
            print(
                f"\nratio atomic / key-by-key on {name}: duration {a['seconds'] / k['seconds']:.2f}, "
                f"keys/s {a['kps'] / k['kps']:.2f}, p50 {a['p50'] / k['p50']:.2f}, "
                f"p99 {a['p99'] / k['p99']:.2f}, max {a['max'] / k['max']:.2f}"
            )


if __name__ == "__main__":
    main()
