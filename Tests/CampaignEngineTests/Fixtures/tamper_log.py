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


def interior_count(size):
    return size - bin(size).count("1")


def rebuild_tree(txn, events, tree):
    """The tree as README lays it out: interior nodes by creation order, level-1 nodes as their two
    leaves, the size (and an odd size's last leaf) under the key 0x00."""
    txn.drop(tree, delete=False)
    peaks, order, size = [], 0, 0
    for count, (_, value) in enumerate(txn.cursor(db=events)):
        leaf = hashlib.sha256(b"\x00" + value[-32:]).digest()
        h, level = leaf, 0
        while count & 1:
            left = peaks.pop()
            h = hashlib.sha256(b"\x01" + left + h).digest()
            level += 1
            txn.put(struct.pack(">Q", order), left + leaf if level == 1 else h, db=tree, append=True)
            order += 1
            count >>= 1
        peaks.append(h)
        size += 1
    txn.put(b"\x00", struct.pack(">Q", size) + (peaks[-1] if size & 1 else b""), db=tree)


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
                keep = interior_count(number)
                for key in [k for k, _ in txn.cursor(db=tree) if len(k) == 8 and struct.unpack(">Q", k)[0] >= keep]:
                    txn.delete(key, db=tree)
                last = txn.get(struct.pack(">Q", number), db=events)[-32:]
                leaf = hashlib.sha256(b"\x00" + last).digest() if number & 1 else b""
                txn.put(b"\x00", struct.pack(">Q", number) + leaf, db=tree)
    env.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), "--tree" in sys.argv[4:])
