#!/usr/bin/env python3
"""Independent verifier of CampaignEngine's signed checkpoints and Merkle proofs.

Written from README ("Merkle tree and checkpoints"), with the standard library and the stock
`lmdb` binding only; it shares no code with the engine. Ed25519 verification follows RFC 8032
§5.1.7 with Python integers.

    verify_tree.py DIR --key VERIFIER_KEY --checkpoint FILE
                   [--inclusion PROVE.json] [--consistency VERIFY.json]

  * checks the checkpoint's signature with the verifier key (a file or the key text);
  * recomputes every record's hash from its bytes (the chain) and the tree's leaves from them;
  * --inclusion: the JSON of `campaign prove POSITION --checkpoint FILE --json`; checks that
    the proof puts the record at that position (read here from the store) under the root;
  * --consistency: the JSON of `campaign verify --checkpoint FILE --key K --json`; checks its
    consistency proof from the checkpoint to the log's current root, recomputed here.
Prints one line per check; exit 0 when all pass, 1 otherwise.
"""
import base64
import hashlib
import json
import struct
import sys

import lmdb

# --- Ed25519 (RFC 8032) ----------------------------------------------------------------------
P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)


def recover_x(y, sign):
    if y >= P:
        return None
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P:
        return None
    if x & 1 != sign:
        x = P - x
    return x


def point_add(a, b):
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    A = (y1 - x1) * (y2 - x2) % P
    B = (y1 + x1) * (y2 + x2) % P
    C = 2 * t1 * t2 * D % P
    Dd = 2 * z1 * z2 % P
    E, F, G, H = B - A, Dd - C, Dd + C, B + A
    return (E * F % P, G * H % P, F * G % P, E * H % P)


def point_mul(s, point):
    result = (0, 1, 1, 0)
    while s:
        if s & 1:
            result = point_add(result, point)
        point = point_add(point, point)
        s >>= 1
    return result


def encode(point):
    x, y, z, _ = point
    zi = pow(z, P - 2, P)
    x, y = x * zi % P, y * zi % P
    return (y | (x & 1) << 255).to_bytes(32, "little")


def decode(data):
    if len(data) != 32:
        return None
    y = int.from_bytes(data, "little")
    sign, y = y >> 255, y & ((1 << 255) - 1)
    x = recover_x(y, sign)
    return None if x is None else (x, y, 1, x * y % P)


BASE_Y = 4 * pow(5, P - 2, P) % P
BASE = (recover_x(BASE_Y, 0), BASE_Y, 1, recover_x(BASE_Y, 0) * BASE_Y % P)


def ed25519_verify(public, message, signature):
    A = decode(public)
    if A is None or len(signature) != 64:
        return False
    s = int.from_bytes(signature[32:], "little")
    if s >= L:
        return False
    k = int.from_bytes(hashlib.sha512(signature[:32] + public + message).digest(), "little") % L
    minus_a = ((-A[0]) % P, A[1], A[2], (-A[3]) % P)
    return encode(point_add(point_mul(s, BASE), point_mul(k, minus_a))) == signature[:32]


# --- C2SP signed note and tlog-checkpoint ---------------------------------------------------
def read_verifier_key(text):
    name, key_id, key = text.strip().split("+", 2)
    raw = base64.b64decode(key)
    if len(raw) != 33 or raw[0] != 1:
        raise ValueError("not an Ed25519 verifier key")
    if hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4] != bytes.fromhex(key_id):
        raise ValueError("the key id does not match the key")
    return name, bytes.fromhex(key_id), raw[1:]


def open_checkpoint(note, key):
    name, key_id, public = key
    text, _, signatures = note.rpartition("\n\n")
    text += "\n"
    for line in signatures.splitlines():
        dash, signer, blob = line.split(" ")
        raw = base64.b64decode(blob)
        if dash == "\u2014" and signer == name and raw[:4] == key_id and ed25519_verify(public, text.encode(), raw[4:]):
            origin, size, root = text.splitlines()[:3]
            return origin, int(size), base64.b64decode(root)
    return None


# --- RFC 9162 tree ---------------------------------------------------------------------------
def node(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_of(leaves):
    """MTH by a frontier of peaks, largest first."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    peaks = []
    for count, leaf in enumerate(leaves):
        h = leaf
        while count & 1:
            h = node(peaks.pop(), h)
            count >>= 1
        peaks.append(h)
    h = peaks.pop()
    while peaks:
        h = node(peaks.pop(), h)
    return h


def verify_inclusion(index, size, leaf, proof, root):
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node(p, r)
            if not fn & 1:
                while not fn & 1 and fn:
                    fn, sn = fn >> 1, sn >> 1
        else:
            r = node(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(old_size, new_size, old_root, new_root, proof):
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0 or old_size > new_size:
        return old_size == 0 and not proof
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    if not path:
        return False
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node(c, fr), node(c, sr)
            if not fn & 1:
                while not fn & 1 and fn:
                    fn, sn = fn >> 1, sn >> 1
        else:
            sr = node(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr == old_root and sr == new_root and sn == 0


# --- the store ------------------------------------------------------------------------------
def leaves_from_log(path):
    """Each record's hash recomputed from its bytes and checked against the chain; the leaves."""
    env = lmdb.open(path, max_dbs=64, readonly=True, lock=False)
    events = env.open_db(b"events", create=False)
    leaves, previous = [], bytes(32)
    with env.begin() as txn:
        for key, value in txn.cursor(db=events):
            position = struct.unpack(">Q", key)[0]
            canonical, stored_previous, stored_hash = value[:-64], value[-64:-32], value[-32:]
            if position != len(leaves) + 1 or stored_previous != previous:
                raise ValueError(f"the chain breaks at position {len(leaves) + 1}")
            if hashlib.sha256(previous + canonical).digest() != stored_hash:
                raise ValueError(f"record {position} does not hash to its stored hash")
            leaves.append(hashlib.sha256(b"\x00" + stored_hash).digest())
            previous = stored_hash
    return leaves


def main(argv):
    args = {argv[i]: argv[i + 1] for i in range(1, len(argv) - 1, 2)}
    directory = argv[0]
    key_text = args["--key"]
    try:
        key_text = open(key_text).read()
    except OSError:
        pass
    key = read_verifier_key(key_text)
    opened = open_checkpoint(open(args["--checkpoint"]).read(), key)
    if opened is None:
        print("checkpoint signature: FAILED")
        return 1
    origin, size, root = opened
    print(f"checkpoint signature: ok ({origin}, {size} events)")
    leaves = leaves_from_log(directory)
    ok = True
    if "--inclusion" in args:
        proof = json.load(open(args["--inclusion"]))
        position = proof["position"]
        good = (
            proof["treeSize"] == size
            and position <= len(leaves)
            and verify_inclusion(position - 1, size, leaves[position - 1], [bytes.fromhex(h) for h in proof["proof"]], root)
        )
        print(f"inclusion of position {position}: {'ok' if good else 'FAILED'}")
        ok &= good
    if "--consistency" in args:
        report = json.load(open(args["--consistency"]))["checkpoint"]
        new_size = report["logSize"]
        good = new_size <= len(leaves) and verify_consistency(
            size, new_size, root, root_of(leaves[:new_size]), [bytes.fromhex(h) for h in report["proof"]]
        )
        print(f"consistency {size} -> {new_size}: {'ok' if good else 'FAILED'}")
        ok &= good
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
