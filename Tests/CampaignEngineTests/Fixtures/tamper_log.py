#!/usr/bin/env python3
"""What an insider with write access to a store could do, for the audit tests (never the engine).

    tamper_log.py DIR rewrite POSITION [--tree]   change a byte of record POSITION's payload and
                                                  re-hash the chain from there (and, with --tree,
                                                  rebuild the Merkle tree table to match)
    tamper_log.py DIR truncate SIZE [--tree]      delete every record after SIZE (and, with --tree,
                                                  the tree's nodes beyond SIZE events)
    tamper_log.py DIR contact INDEX               edit a string among the kept values of the
                                                  INDEX-th contact in `contact-values`
    tamper_log.py DIR orphan INDEX                copy the INDEX-th contact's kept values to a
                                                  contact id of its tenant that has no events, and
                                                  to the same id under a tenant that has none
    tamper_log.py DIR unlink POSITION             delete the stream index's link of POSITION
"""
import json
import hashlib
import struct
import sys

import lmdb


def interior_count(size):
    return size - bin(size).count("1")


def set_trailer(txn, tree, size, last_leaf):
    """The size (and an odd size's last leaf) after the last node's bytes, or under 0x00 when the
    tree has no node yet; the node that had it loses it."""
    trailer = (last_leaf if size & 1 else b"") + struct.pack(">Q", size)
    count = interior_count(size)
    if count == 0:
        txn.put(b"\x00", trailer, db=tree)
        return
    key = struct.pack(">Q", count - 1)
    txn.put(key, txn.get(key, db=tree) + trailer, db=tree)


def rebuild_tree(txn, events, tree):
    """The tree as README lays it out: interior nodes by creation order, level-1 nodes as their two
    leaves, the size (and an odd size's last leaf) after the last node."""
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
    set_trailer(txn, tree, size, peaks[-1])


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
        elif action == "orphan":
            values = env.open_db(b"contact-values", create=False, txn=txn)
            key, value = list(txn.cursor(db=values))[number]
            tenant, contact = bytes(key).split(b"\x00", 1)
            txn.put(tenant + b"\x00ctc_never_created", bytes(value), db=values)
            txn.put(b"another-tenant\x00" + contact, bytes(value), db=values)
        elif action == "unlink":
            links = env.open_db(b"stream-links", create=False, txn=txn)
            txn.delete(struct.pack(">Q", number), db=links)
        elif action == "truncate":
            for key in [k for k, _ in txn.cursor(db=events) if struct.unpack(">Q", k)[0] > number]:
                txn.delete(key, db=events)
            if with_tree:
                keep = interior_count(number)
                for key in [k for k, _ in txn.cursor(db=tree) if len(k) == 8 and struct.unpack(">Q", k)[0] >= keep]:
                    txn.delete(key, db=tree)
                last = txn.get(struct.pack(">Q", number), db=events)[-32:]
                set_trailer(txn, tree, number, hashlib.sha256(b"\x00" + last).digest())
    env.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), "--tree" in sys.argv[4:])
