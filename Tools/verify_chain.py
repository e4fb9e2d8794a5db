#!/usr/bin/env python3
"""Reference reader for the CampaignEngine log, independent of the Swift code.

Walks the `events` database of an engine directory with the stock `lmdb` binding
(pip install lmdb), checks the hash chain, decodes every envelope, and prints the
count and head hash. Exit 1 on the first bad record. Usage: verify_chain.py DIR
"""
import hashlib
import struct
import sys

import lmdb


def main(path):
    env = lmdb.open(path, max_dbs=64, readonly=True, lock=False)
    events = env.open_db(b"events", create=False)
    previous = bytes(32)
    count = 0
    with env.begin() as txn:
        for key, value in txn.cursor(db=events):
            position = struct.unpack(">Q", key)[0]
            if position != count + 1:
                return fail(count + 1, "record missing")
            canonical, stored_previous, stored_hash = value[:-64], value[-64:-32], value[-32:]
            if stored_previous != previous:
                return fail(position, "previous hash does not match")
            if hashlib.sha256(previous + canonical).digest() != stored_hash:
                return fail(position, "hash does not match the record's bytes")
            fmt, stored_position, version, millis, schema = struct.unpack(">BQQqH", canonical[:27])
            if fmt != 1 or stored_position != position:
                return fail(position, "bad header")
            offset = 27
            for _ in range(6):  # streamId, type, tenant, actor, requestId, causationId
                (length,) = struct.unpack(">H", canonical[offset:offset + 2])
                canonical[offset + 2:offset + 2 + length].decode("utf-8")
                offset += 2 + length
            (payload_length,) = struct.unpack(">I", canonical[offset:offset + 4])
            if offset + 4 + payload_length != len(canonical):
                return fail(position, "payload length does not match")
            previous = stored_hash
            count += 1
    print(f"{count} events verified, head {previous.hex()}")
    return 0


def fail(position, reason):
    print(f"bad record at position {position}: {reason}")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
