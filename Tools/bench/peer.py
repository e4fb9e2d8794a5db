#!/usr/bin/env python3
"""The peer of campaign-bench: the Python `eventsourcing` library on SQLite doing the same cases.

Run by campaign-bench with the interpreter of a virtual environment it creates (.venv-bench);
never a dependency of the package. Prints one JSON object:
append_batch_1 / append_batch_100 / append_batch_1000 (events/s), read_decode (events/s),
load_10k_ms and load_10k_snapshot_ms (milliseconds, median).
Usage: peer.py WORKDIR QUICK(0|1)
"""
import json
import os
import statistics
import sys
import time

workdir, quick = sys.argv[1], sys.argv[2] == "1"
os.makedirs(workdir, exist_ok=True)
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


def append(batch, total):
    started = time.perf_counter()
    written = 0
    while written < total:
        campaign = Campaign(name=f"c{written}")
        for _ in range(batch - 1):
            campaign.update(BODY)
        app.save(campaign)  # one transaction for the batch
        written += batch
    return written / (time.perf_counter() - started)


results["append_batch_1"] = append(1, 300 if quick else 2000)
results["append_batch_100"] = append(100, 20_000 if quick else 100_000)
results["append_batch_1000"] = append(1000, 50_000 if quick else 200_000)

# One aggregate with 10,000 events for the load and read cases.
big = Campaign(name="big")
for _ in range(9_999):
    big.update(BODY)
app.save(big)

started = time.perf_counter()
decoded = 0
for _ in range(3):
    decoded += sum(1 for _ in app.events.get(big.id))
results["read_decode"] = decoded / (time.perf_counter() - started)


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
