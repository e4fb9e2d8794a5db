#!/usr/bin/env python3
"""Rewrites a store's stream index the way the stream index tests need, with the stock LMDB binding
and no code of the engine's.

Usage: stream_index.py DIR legacy
    replaces the linked index (stream-heads, stream-links, stream-marks) with the older `streams`
    table, one entry a version: streamId 0x00 version(u64 BE) -> position(u64 BE), made from the records.
Usage: stream_index.py DIR old-binary
    opens the table `streams` as a binary from before the linked index does (creating it when
    missing) and prints "opened" or "refused: <reason>".
Usage: stream_index.py DIR relink POSITION TARGET
    points the link of POSITION at TARGET, as a damaged or tampered index would.
Usage: stream_index.py DIR unmark STREAM VERSION
    deletes the mark of STREAM's VERSION.
Usage: stream_index.py DIR behead STREAM
    deletes STREAM's head.
Usage: stream_index.py DIR rehead STREAM VERSION POSITION
    sets STREAM's head to VERSION at POSITION.
"""
import struct
import sys

import lmdb

directory, action = sys.argv[1], sys.argv[2]
env = lmdb.open(directory, max_dbs=64, subdir=True)
with env.begin(write=True) as txn:
    events = env.open_db(b"events", txn=txn, create=False)
    if action == "legacy":
        txn.delete(b"streams")  # the record an upgraded store keeps where `streams` was
        streams = env.open_db(b"streams", txn=txn, create=True)
        for key, record in txn.cursor(db=events):
            position = key
            version = record[9:17]
            (length,) = struct.unpack(">H", record[27:29])
            stream = bytes(record[29 : 29 + length])
            txn.put(stream + b"\x00" + bytes(version), bytes(position), db=streams)
        for name in (b"stream-heads", b"stream-links", b"stream-marks"):
            txn.drop(env.open_db(name, txn=txn, create=False), delete=True)
    elif action == "old-binary":
        try:
            env.open_db(b"streams", txn=txn, create=True)
            print("opened")
        except lmdb.Error as error:
            print(f"refused: {error}")
    elif action == "relink":
        links = env.open_db(b"stream-links", txn=txn, create=False)
        txn.put(struct.pack(">Q", int(sys.argv[3])), struct.pack(">Q", int(sys.argv[4])), db=links)
    elif action == "unmark":
        marks = env.open_db(b"stream-marks", txn=txn, create=False)
        key = sys.argv[3].encode() + b"\x00" + struct.pack(">Q", int(sys.argv[4]))
        if not txn.delete(key, db=marks):
            sys.exit("no such mark")
    elif action == "behead":
        heads = env.open_db(b"stream-heads", txn=txn, create=False)
        if not txn.delete(sys.argv[3].encode(), db=heads):
            sys.exit("no such head")
    elif action == "rehead":
        heads = env.open_db(b"stream-heads", txn=txn, create=False)
        txn.put(sys.argv[3].encode(), struct.pack(">QQ", int(sys.argv[4]), int(sys.argv[5])), db=heads)
    else:
        sys.exit(f"unknown action {action}")
env.close()
