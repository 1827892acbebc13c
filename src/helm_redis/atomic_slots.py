"""Valkey 9's atomic slot migration as a strategy of the slot move (slots.move_slots chooses it).

`CLUSTER MIGRATESLOTS SLOTSRANGE <start> <end> [...] NODE <id> [SLOTSRANGE ... NODE ...]`, sent to the
source, makes the server move whole slots itself: it forks a snapshot of the slots (as AOF commands) to
the target over a replication-like connection, streams the writes that follow, pauses writes for the
short hand-over and lets the target take the slots with a bumped epoch. Clients see no ASK redirection
and no key is ever half moved. What this module relies on, from valkey 9.1.2 `src/cluster_migrateslots.c`:

- refused (an error reply, nothing started) on a replica, when any slot of the node is IMPORTING or
  MIGRATING the old way ("Slots are being manually migrated"), for a slot already being exported, and
  when a range spans two owners or is not the node's own ("Slots are not served by this node.");
- one job per SLOTSRANGE...NODE group, listed by `CLUSTER GETSLOTMIGRATIONS` newest first with `name`,
  `operation` (EXPORT on the source, IMPORT on the target), `slot_ranges` ("0-10 20-30"),
  `target_node`, `source_node`, `state`, `message` and timestamps; terminal states `success`, `failed`,
  `cancelled`; the log keeps finished jobs (cluster-slot-migration-log-max-len, 1000);
- an export succeeds once the source sees the target own the slots; a failed or cancelled job leaves
  them with the source, and the target deletes what it had imported (state `cleaning-up` first);
  "Unpaused before migration completed" is the one failure after which the target may own them anyway;
- the source logs in to the target as a replica does (primaryuser/primaryauth, alias masteruser/
  masterauth) over the replication transport (TLS when tls-replication), and the target runs every
  command of the import under that user's ACL: `CLUSTER SYNCSLOTS` and every write command of the data.
  A user limited to replication (`-@all +psync +replconf +ping`) fails the job at once with NOPERM, so
  for the move each target grants that user what an import runs (`import_grant`) and takes it back
  after, whatever happens: the wider rights exist on the targets for the duration of the move only.

A job that fails while the source still owns its slots is handed back to the caller, which moves those
slots key by key; every wait is bounded, and the module never resets or flushes a node.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis

from .engine import read_server_infos
from .errors import HelmRedisError
from .nodes import Connector, parallel
from .plan import Member

TERMINAL = ("success", "failed", "cancelled")
# States after which a cancel could cut the hand-over short (the server bounds them itself).
HANDING_OVER = ("waiting-to-pause", "failover-paused", "failover-granted")
JOB_TIMEOUT = 600.0
AGREEMENT_TIMEOUT = 60.0
POLL = 0.05
COUNT_BATCH = 1000
# What the import on a target runs under the source's login user (valkey 9.1.2 cluster_migrateslots.c):
# CLUSTER SYNCSLOTS, then the slots' data as write commands (SELECT first), on any key.
IMPORT_RULES = ("+cluster|syncslots", "+@write", "+select", "~*")


class SlotMigrationFailed(HelmRedisError):
    """An atomic slot migration did not finish in time, or ended in a state that no fallback can fix."""

    exit_code = 1


def atomic_support(connector: Connector, members: list[Member]) -> tuple[bool, str]:
    """(True, '') when every node runs an engine with CLUSTER MIGRATESLOTS (Valkey >= 9.0), else
    (False, the first node that does not and its engine). Read from INFO server (engine.py)."""
    if not members:
        return False, "no nodes"
    infos = read_server_infos(connector, [m.address for m in members])
    for member in members:
        info = infos[member.address]
        if not info.features.atomic_slot_migration:
            return False, f"{member.name} runs {info}"
    return True, ""


def slot_ranges(slots: list[int]) -> list[tuple[int, int]]:
    """Sorted slots as (start, end) ranges of consecutive slots."""
    ranges: list[tuple[int, int]] = []
    for slot in sorted(set(slots)):
        if ranges and slot == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], slot)
        else:
            ranges.append((slot, slot))
    return ranges


def ranges_text(ranges: list[tuple[int, int]]) -> str:
    """As GETSLOTMIGRATIONS writes a job's slot_ranges."""
    return " ".join(f"{start}-{end}" for start, end in ranges)


@dataclass
class Job:
    source: Member
    target: Member
    target_id: str
    slots: list[int]
    keys: int = 0
    name: str | None = None
    state: str = "not started"
    message: str = ""
    reported: float = field(default=0.0)

    @property
    def ranges(self) -> list[tuple[int, int]]:
        return slot_ranges(self.slots)

    def describe(self) -> str:
        return f"slots {ranges_text(self.ranges)} from {self.source.name} to {self.target.name}"


def jobs_of(connector: Connector, member: Member) -> list[dict[str, object]]:
    """CLUSTER GETSLOTMIGRATIONS of a node, newest first, each job as a dict."""
    reply = connector.client(member.address).execute_command("CLUSTER", "GETSLOTMIGRATIONS")
    return [job if isinstance(job, dict) else dict(zip(job[::2], job[1::2], strict=True)) for job in reply]


def _owners(connector: Connector, member: Member, slots: list[int]) -> dict[int, str | None]:
    """slot -> owner node id in `member`'s own view (CLUSTER SLOTS)."""
    wanted = set(slots)
    owners: dict[int, str | None] = dict.fromkeys(wanted)
    for entry in connector.client(member.address).execute_command("CLUSTER", "SLOTS"):
        start, end, master = int(entry[0]), int(entry[1]), entry[2]
        node_id = master[2] if len(master) > 2 else None
        for slot in wanted.intersection(range(start, end + 1)):
            owners[slot] = node_id
    return owners


def _count_keys(connector: Connector, member: Member, slots: list[int]) -> int:
    client = connector.client(member.address)
    total = 0
    for start in range(0, len(slots), COUNT_BATCH):
        pipe = client.pipeline(transaction=False)
        for slot in slots[start : start + COUNT_BATCH]:
            pipe.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot)
        total += sum(int(n) for n in pipe.execute())
    return total


def _wait_exports_idle(connector: Connector, member: Member, deadline: float, progress) -> None:
    """An export a previous run started (and left running) finishes before this run plans on its slots."""
    while True:
        busy = [
            j for j in jobs_of(connector, member) if j["operation"] == "EXPORT" and j["state"] not in TERMINAL
        ]
        if not busy:
            return
        if time.monotonic() > deadline:
            ranges = ", ".join(f"{j['slot_ranges']} ({j['state']})" for j in busy)
            raise SlotMigrationFailed(
                f"{member.name} is still exporting slots {ranges} from an earlier migration: "
                "see CLUSTER GETSLOTMIGRATIONS on it, or cancel with CLUSTER CANCELSLOTMIGRATIONS"
            )
        progress(f"{member.name} is still exporting {busy[0]['slot_ranges']} ({busy[0]['state']}): waiting")
        time.sleep(0.5)


def move_atomic(
    connector: Connector,
    ids: dict[Member, str],
    members: list[Member],
    groups: dict[tuple[Member, Member], list[int]],
    progress: Callable[[str], None] = lambda _msg: None,
    timeout: float = JOB_TIMEOUT,
) -> tuple[int, dict[tuple[Member, Member], list[int]]]:
    """Move each (source, target) group of slots with CLUSTER MIGRATESLOTS, every source at once.
    Returns (keys moved as counted before the start, the groups whose job failed while the source kept
    the slots: the caller moves those key by key). Waits until every member sees the new owners."""
    deadline = time.monotonic() + timeout
    sources = sorted({source for source, _ in groups}, key=lambda m: m.ordinal)
    parallel(lambda source: _wait_exports_idle(connector, source, deadline, progress), sources)
    jobs: list[Job] = []
    for (source, target), slots in sorted(groups.items(), key=lambda g: (g[0][0].ordinal, g[0][1].ordinal)):
        owners = _owners(connector, source, slots)
        # Slots a previous (interrupted) run already handed over are done.
        pending = [s for s in slots if owners[s] == ids[source]]
        stray = [s for s in slots if owners[s] not in (ids[source], ids[target])]
        if stray:
            raise SlotMigrationFailed(
                f"slots {ranges_text(slot_ranges(stray))} are owned neither by {source.name} nor by "
                f"{target.name} any more: read the cluster again and plan anew"
            )
        if pending:
            jobs.append(Job(source, target, ids[target], pending, _count_keys(connector, source, pending)))
    fallback: dict[tuple[Member, Member], list[int]] = {}
    by_source: dict[Member, list[Job]] = {}
    for job in jobs:
        by_source.setdefault(job.source, []).append(job)

    def start(source: Member) -> None:
        before = {j["name"] for j in jobs_of(connector, source)}
        args: list[object] = []
        for job in by_source[source]:
            args += ["SLOTSRANGE", *[bound for r in job.ranges for bound in r], "NODE", job.target_id]
        try:
            connector.client(source.address).execute_command("CLUSTER", "MIGRATESLOTS", *args)
        except redis.ResponseError as error:
            # Refused before anything started: the slots are where they were.
            for job in by_source[source]:
                job.state, job.message = "refused", str(error)
            return
        for entry in jobs_of(connector, source):
            if entry["name"] in before or entry["operation"] != "EXPORT":
                continue
            for job in by_source[source]:
                if entry["target_node"] == job.target_id and entry["slot_ranges"] == ranges_text(job.ranges):
                    job.name, job.state = str(entry["name"]), str(entry["state"])

    targets = sorted({job.target for job in jobs}, key=lambda m: m.ordinal)
    with import_grant(connector, list(by_source), targets, progress):
        parallel(start, list(by_source))
        for job in jobs:
            if job.state != "refused" and job.name is None:
                raise SlotMigrationFailed(
                    f"CLUSTER MIGRATESLOTS of {job.describe()} was accepted but CLUSTER GETSLOTMIGRATIONS on "
                    f"{job.source.name} lists no such job"
                )
            if job.name:
                progress(f"atomic slot migration of {job.describe()} ({job.keys} keys) started")
        _poll(connector, [j for j in jobs if j.name], deadline, progress)
    moved = 0
    for job in jobs:
        if job.state == "success":
            moved += job.keys
            continue
        owners = _owners(connector, job.source, job.slots)
        kept = [s for s in job.slots if owners[s] == ids[job.source]]
        taken = [s for s in job.slots if owners[s] == job.target_id]
        if len(taken) == len(job.slots):  # "Unpaused before migration completed": it went through
            moved += job.keys
            continue
        if len(kept) != len(job.slots):
            raise SlotMigrationFailed(
                f"atomic slot migration of {job.describe()} ended {job.state} ({job.message.strip()}) with "
                f"slots on both sides: {job.source.name} has {ranges_text(slot_ranges(kept))}"
            )
        if job.name:
            _wait_import_cleaned(connector, job, deadline)
        progress(
            f"atomic slot migration of {job.describe()} {job.state}: {job.message.strip()}; "
            "moving them key by key"
        )
        fallback[(job.source, job.target)] = job.slots
    done = [job for job in jobs if (job.source, job.target) not in fallback]
    if done:
        _wait_agreement(connector, members, done, time.monotonic() + AGREEMENT_TIMEOUT)
    return moved, fallback


@contextlib.contextmanager
def import_grant(connector: Connector, sources: list[Member], targets: list[Member], progress):
    """Let the user the sources log in to the targets as (primaryuser, the chart's `replication`) run an
    import on the targets for the duration of the block; its own rules are restored after. Nothing to do
    without such a user (no ACLs: the source logs in as `default`, which may do anything)."""
    users = {
        str(connector.client(s.address).config_get("primaryuser").get("primaryuser") or "") for s in sources
    }
    users.discard("")
    saved: list[tuple[Member, str, list[str]]] = []
    try:
        for target in targets:
            client = connector.client(target.address)
            for user in sorted(users):
                rules = client.acl_getuser(user)
                if rules is None:
                    continue
                keys = rules.get("keys") or []
                keys = keys.split() if isinstance(keys, str) else list(keys)
                commands = rules.get("commands")
                commands = " ".join(commands) if isinstance(commands, list) else str(commands)
                saved.append((target, user, [*commands.split(), *keys]))
                client.execute_command("ACL", "SETUSER", user, *IMPORT_RULES)
        if saved:
            progress(f"user {', '.join(sorted(users))} may run the import on the targets for the move")
        yield
    finally:
        for target, user, rules in saved:
            with contextlib.suppress(redis.RedisError):  # a restarted target reads its rules from its file
                connector.client(target.address).execute_command(
                    "ACL", "SETUSER", user, "resetkeys", "-@all", *rules
                )


def _poll(connector: Connector, jobs: list[Job], deadline: float, progress) -> None:
    """Until every job is in a terminal state; past the deadline, cancel (unless handing over) and fail."""
    sources = sorted({job.source for job in jobs}, key=lambda m: m.ordinal)
    polls = 0
    while any(job.state not in TERMINAL for job in jobs):
        polls += 1
        listed = dict(zip(sources, parallel(lambda s: jobs_of(connector, s), sources), strict=True))
        now = time.monotonic()
        for job in jobs:
            entry = next((e for e in listed[job.source] if e["name"] == job.name), None)
            if entry is None:  # dropped from the log: only finished jobs are ever dropped
                job.state, job.message = "failed", "no longer listed by CLUSTER GETSLOTMIGRATIONS"
                continue
            job.state, job.message = str(entry["state"]), str(entry["message"])
            if job.state not in TERMINAL and now - job.reported > 5:
                job.reported = now
                progress(f"atomic slot migration of {job.describe()}: {job.state}")
        if all(job.state in TERMINAL for job in jobs):
            return
        if now > deadline:
            late = [job for job in jobs if job.state not in TERMINAL]
            cancel = sorted({j.source for j in late if j.state not in HANDING_OVER}, key=lambda m: m.ordinal)
            for source in cancel:
                # "No migrations ongoing": it finished meanwhile.
                with contextlib.suppress(redis.ResponseError):
                    connector.client(source.address).execute_command("CLUSTER", "CANCELSLOTMIGRATIONS")
            job = late[0]
            raise SlotMigrationFailed(
                f"atomic slot migration of {job.describe()} did not finish in time (state {job.state}"
                f"{', cancelled' if job.source in cancel else ''}; {polls} polls): see CLUSTER "
                f"GETSLOTMIGRATIONS on {job.source.name}"
            )
        time.sleep(POLL if polls < 100 else 0.2)


def _wait_import_cleaned(connector: Connector, job: Job, deadline: float) -> None:
    """A failed import deletes what it had received (state cleaning-up) before the key-by-key fallback
    may RESTORE the same keys on the target."""
    while True:
        entry = next((e for e in jobs_of(connector, job.target) if e["name"] == job.name), None)
        if entry is None or entry["state"] in TERMINAL:
            return
        if time.monotonic() > deadline:
            raise SlotMigrationFailed(
                f"{job.target.name} is still cleaning up the failed import of {job.describe()} "
                f"(state {entry['state']})"
            )
        time.sleep(POLL)


def _wait_agreement(connector: Connector, members: list[Member], jobs: list[Job], deadline: float) -> None:
    """The target announces its new slots with a bumped epoch; wait until every member sees them."""
    wanted = {slot: job.target_id for job in jobs for slot in job.slots}
    slots = sorted(wanted)
    while True:
        views = parallel(lambda m: _owners(connector, m, slots), members)
        behind = [
            (member, slot)
            for member, owners in zip(members, views, strict=True)
            for slot in slots
            if owners[slot] != wanted[slot]
        ]
        if not behind:
            return
        if time.monotonic() > deadline:
            member, slot = behind[0]
            raise SlotMigrationFailed(
                f"{member.name} does not yet see slot {slot} at its new owner after the atomic migration "
                f"({len(behind)} slot views behind)"
            )
        time.sleep(0.1)
