#!/usr/bin/env python3
"""The peer of campaign-bench: the Python `eventsourcing` library doing the engine's cases, on
SQLite or on PostgreSQL.

Run by campaign-bench with the interpreter of a virtual environment it creates (.venv-bench);
never a dependency of the package. Each case runs the workload of the engine case it is compared
with. Prints one JSON object:
- append_batch_1 / append_batch_100 / append_batch_1000 (events/s): events of a 300-byte body,
  each to one of 1,000 aggregates at random, one transaction per batch (the engine's case 1);
- read_decode (events/s): the whole log read back in order and each event decoded;
- load_10k_ms and load_10k_snapshot_ms (milliseconds, median): one aggregate of 10,000 events.
Usage: peer.py WORKDIR QUICK(0|1) [sqlite|postgres]. For postgres the caller sets POSTGRES_HOST,
POSTGRES_PORT, POSTGRES_DBNAME, POSTGRES_USER and POSTGRES_PASSWORD.
"""
import json
import os
import random
import statistics
import sys
import time

workdir, quick = sys.argv[1], sys.argv[2] == "1"
backend = sys.argv[3] if len(sys.argv) > 3 else "sqlite"
os.makedirs(workdir, exist_ok=True)
if backend == "postgres":
    os.environ["PERSISTENCE_MODULE"] = "eventsourcing.postgres"
else:
    os.environ["PERSISTENCE_MODULE"] = "eventsourcing.sqlite"
    os.environ["SQLITE_DBNAME"] = os.path.join(workdir, "peer.sqlite")
    if os.path.exists(os.environ["SQLITE_DBNAME"]):
        os.remove(os.environ["SQLITE_DBNAME"])

from eventsourcing.application import Application  # noqa: E402
from eventsourcing.domain import Aggregate, event  # noqa: E402

BODY = "x" * 300  # the same 300-byte payload as the engine's cases


class Campaign(Aggregate):
    @event("Created")
    def __init__(self, name):
        self.name = name
        self.body = ""
        self.updates = 0

    @event("Updated")
    def update(self, body):
        self.body = body
        self.updates += 1


class Campaigns(Application):
    # Snapshots are taken only when asked (take_snapshot), like the engine's lazy snapshot.
    is_snapshotting_enabled = True


app = Campaigns()
results = {}


campaigns = {}
chooser = random.Random(7)


def append(batch, total):
    """Appends `total` events in transactions of `batch`, each event to one of 1,000 aggregates at
    random: created on its first event, updated after, as the engine appends to 1,000 streams."""
    started = time.perf_counter()
    written = 0
    while written < total:
        touched = {}
        for _ in range(min(batch, total - written)):
            key = chooser.randrange(1_000)
            campaign = campaigns.get(key)
            if campaign is None:
                campaign = campaigns[key] = Campaign(name=f"c{key}")
            else:
                campaign.update(BODY)
            touched[key] = campaign
            written += 1
        app.save(*touched.values())  # one transaction for the batch
    return written / (time.perf_counter() - started)


results["append_batch_1"] = append(1, 300 if quick else 2000)
results["append_batch_100"] = append(100, 20_000 if quick else 200_000)
results["append_batch_1000"] = append(1000, 100_000 if quick else 1_000_000)

# One aggregate with 10,000 events for the load and read cases.
big = Campaign(name="big")
for _ in range(9_999):
    big.update(BODY)
app.save(big)

# The whole log read back in order, each event decoded, as the engine reads its global log.
started = time.perf_counter()
decoded = 0
cap = 30_000 if quick else 300_000
position = 1
while decoded < cap:
    page = app.recorder.select_notifications(start=position, limit=1_000)
    if not page:
        break
    for notification in page:
        app.mapper.to_domain_event(notification)
        decoded += 1
    position = page[-1].id + 1
results["read_decode"] = decoded / (time.perf_counter() - started)
results["read_decode_events"] = decoded


def median_ms(runs, body):
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        body()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


results["load_10k_ms"] = median_ms(5, lambda: app.repository.get(big.id))
app.take_snapshot(big.id)
results["load_10k_snapshot_ms"] = median_ms(21, lambda: app.repository.get(big.id))
print(json.dumps(results))
