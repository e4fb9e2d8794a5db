#!/usr/bin/env python3
"""Reads a JetStream stream back with the stock Python client (nats-py) and checks that it holds
exactly the CloudEvents `campaign export` writes for the same store, in order, once.

    campaign export --data DIR > expected.jsonl
    python3 Tools/nats_readback.py nats://127.0.0.1:4222 CAMPAIGN expected.jsonl

Shares no code with the engine: a consumer outside the project (pip install nats-py)."""
import asyncio
import json
import sys

import nats


async def main(url, stream, expected_path):
    with open(expected_path, encoding="utf-8") as f:
        expected = [json.loads(line) for line in f if line.strip()]
    nc = await nats.connect(url)
    js = nc.jetstream()
    info = await js.stream_info(stream)
    subjects = info.config.subjects or [">"]
    # An ephemeral pull consumer over the whole stream, from its first message.
    sub = await js.pull_subscribe(subjects[0], stream=stream)
    received = []
    while len(received) < len(expected):
        try:
            batch = await sub.fetch(min(256, len(expected) - len(received)), timeout=5)
        except nats.errors.TimeoutError:
            break
        for msg in batch:
            received.append(msg)
            await msg.ack()  # a pull consumer hands out at most 1,000 unacknowledged messages
    await nc.close()
    if info.state.messages != len(expected) or len(received) != len(expected):
        print(f"the stream holds {info.state.messages} messages, {len(received)} read; "
              f"the log has {len(expected)} events")
        return 1
    for index, (msg, event) in enumerate(zip(received, expected)):
        data = json.loads(msg.data)
        msg_id = (msg.headers or {}).get("Nats-Msg-Id")
        if data != event or msg_id != event["id"] or msg.metadata.sequence.stream != index + 1:
            print(f"message {index + 1} differs: {msg.subject} {msg_id} against {event['id']}")
            return 1
    print(f"{len(received)} events read back in order, each once")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        print(__doc__)
        sys.exit(64)
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3])))
