#!/usr/bin/env python3
"""What an insider with write access to a store could do, for the audit tests (never the engine).

    tamper_log.py DIR rewrite POSITION [--tree]   change a byte of record POSITION's payload and
                                                  re-hash the chain from there (and, with --tree,
                                                  rebuild the Merkle tree table to match)
    tamper_log.py DIR truncate SIZE [--tree]      delete every record after SIZE (and, with --tree,
                                                  the tree's nodes beyond SIZE events)
    tamper_log.py DIR contact INDEX               edit a string among the kept values of the
                                                  INDEX-th contact in `contact-values`
"""
import json
import hashlib
import struct
import sys

import lmdb


def node_count(size):
    return 2 * size - bin(size).count("1")


def rebuild_tree(txn, events, tree):
    txn.drop(tree, delete=False)
    peaks, order = [], 0
    for count, (_, value) in enumerate(txn.cursor(db=events)):
        h = hashlib.sha256(b"\x00" + value[-32:]).digest()
        txn.put(struct.pack(">Q", order), h, db=tree)
        order += 1
        while count & 1:
            h = hashlib.sha256(b"\x01" + peaks.pop() + h).digest()
            txn.put(struct.pack(">Q", order), h, db=tree)
            order += 1
            count >>= 1
        peaks.append(h)


def main(directory, action, number, with_tree):
    env = lmdb.open(directory, max_dbs=64, map_size=1 << 34)
    events = env.open_db(b"events", create=False)
    tree = env.open_db(b"tree", create=False)
    with env.begin(write=True) as txn:
        if action == "rewrite":
            records = [(k, bytes(v)) for k, v in txn.cursor(db=events) if struct.unpack(">Q", k)[0] >= number]
            previous = txn.get(struct.pack(">Q", number - 1), db=events)
            previous = previous[-32:] if previous else bytes(32)
            for index, (key, value) in enumerate(records):
                canonical = bytearray(value[:-64])
                if index == 0:
                    canonical[-1] ^= 0x01  # the payload's last byte
                digest = hashlib.sha256(previous + bytes(canonical)).digest()
                txn.put(key, bytes(canonical) + previous + digest, db=events)
                previous = digest
            if with_tree:
                rebuild_tree(txn, events, tree)
        elif action == "contact":
            values = env.open_db(b"contact-values", create=False, txn=txn)
            key, value = list(txn.cursor(db=values))[number]
            stored = json.loads(bytes(value))
            field = next(name for name, v in sorted(stored["values"].items()) if isinstance(v, str))
            stored["values"][field] = "x" + stored["values"][field]
            txn.put(key, json.dumps(stored).encode(), db=values)
        elif action == "truncate":
            for key in [k for k, _ in txn.cursor(db=events) if struct.unpack(">Q", k)[0] > number]:
                txn.delete(key, db=events)
            if with_tree:
                keep = node_count(number)
                for key in [k for k, _ in txn.cursor(db=tree) if struct.unpack(">Q", k)[0] >= keep]:
                    txn.delete(key, db=tree)
    env.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), "--tree" in sys.argv[4:])
