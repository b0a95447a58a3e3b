#!/usr/bin/env python3
"""Where a segment's bytes go, column by column (docs/storage-format.md, "Segments").

  bench/segment_columns.py SEGMENT_FILE... [--blocks N] [--hc LEVEL]

Reads each block (LZ4 through the system liblz4, by ctypes), splits its raw
bytes into the columns of the layout (commit versions, tombstones, then each
field: null bits and values), and prints per column: the raw bytes, the
encoding the writer chose (most common over the blocks), and the bytes the
column takes when LZ4-compressed alone in each block, an estimate of its
share of the file (the sum over columns is printed next to the blocks' real
size). Compaction writes LZ4 HC level 9, a flush LZ4 fast (--hc). --blocks N reads only every k-th block so that about
N are read (default: all).
"""

import argparse
import collections
import ctypes
import ctypes.util
import struct
import sys

TYPES = {0: "int64", 1: "float64", 2: "bool", 3: "string", 4: "timestamp", 5: "json"}
INT_ENC = {0: "CONST", 1: "DELTA", 2: "FOR"}
BITS_ENC = {0: "ZERO", 1: "ONE", 2: "MAP"}
FLOAT_ENC = {0: "RAW", 1: "SHUFFLE", 2: "DEC"}
STR_ENC = {0: "PLAIN", 1: "DICT"}

_lz4 = ctypes.CDLL(ctypes.util.find_library("lz4") or "liblz4.so.1")
_lz4.LZ4_decompress_safe.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int]
_lz4.LZ4_compress_default.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int]
_lz4.LZ4_compressBound.argtypes = [ctypes.c_int]
_lz4.LZ4_compress_HC.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int,
                                 ctypes.c_int]


def lz4_decompress(src, raw_len):
    dst = ctypes.create_string_buffer(raw_len)
    n = _lz4.LZ4_decompress_safe(src, dst, len(src), raw_len)
    if n != raw_len:
        raise ValueError("LZ4 block does not decompress")
    return dst.raw


def lz4_size(data, hc_level=0):
    """Bytes of data LZ4-compressed (HC at hc_level when > 0), or raw when that is smaller."""
    if not data:
        return 0
    cap = _lz4.LZ4_compressBound(len(data))
    dst = ctypes.create_string_buffer(cap)
    if hc_level > 0:
        n = _lz4.LZ4_compress_HC(data, dst, len(data), cap, hc_level)
    else:
        n = _lz4.LZ4_compress_default(data, dst, len(data), cap)
    return min(n, len(data))


def varint(buf, pos):
    v = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        v |= (b & 0x7F) << shift
        if b < 0x80:
            return v, pos
        shift += 7


def parse_meta(meta):
    pos = 0
    nfields, pos = varint(meta, pos)
    fields = []
    for _ in range(nfields):
        t, flags = meta[pos], meta[pos + 1]
        pos += 2
        ln, pos = varint(meta, pos)
        fields.append((meta[pos:pos + ln].decode(), TYPES.get(t, "?%d" % t)))
        pos += ln
    return fields


def block_lengths(index):
    pos = 0
    nblocks, pos = varint(index, pos)
    out = []
    for _ in range(nblocks):
        length, pos = varint(index, pos)
        for _ in range(4):  # entries, tombstones, min version, version span
            _, pos = varint(index, pos)
        has_time = index[pos]
        pos += 1
        if has_time:
            _, pos = varint(index, pos)
            _, pos = varint(index, pos)
        kl, pos = varint(index, pos)
        pos += kl
        _, pos = varint(index, pos)
        rl, pos = varint(index, pos)
        pos += rl
        out.append(length)
    return out


def bits_len(col, n):
    """Bytes of a bits column of n values at the start of col."""
    if n == 0:
        return 0
    return 1 + ((n + 7) // 8 if col[0] == 2 else 0)


def popcount_nulls(col, n):
    if n == 0 or col[0] == 0:
        return 0
    if col[0] == 1:
        return n
    return sum(bin(b).count("1") for b in col[1:1 + (n + 7) // 8])


def analyse(path, want_blocks, hc_level):
    data = open(path, "rb").read()
    foot = data[-80:]
    meta_off, meta_len = struct.unpack_from("<QI", foot, 0)
    idx_off, idx_len = struct.unpack_from("<QI", foot, 16)
    fields = parse_meta(data[meta_off:meta_off + meta_len])
    lengths = block_lengths(data[idx_off:idx_off + idx_len])
    names = ["(commit version)", "(tombstone)"] + ["%s %s" % f for f in fields]
    raw = collections.Counter()
    packed = collections.Counter()
    encs = collections.defaultdict(collections.Counter)
    dict_ratio = collections.defaultdict(lambda: [0, 0])  # distinct, values
    step = max(1, len(lengths) // want_blocks) if want_blocks else 1
    blocks_read = rows = disk = 0
    off = 32
    for bi, length in enumerate(lengths):
        if bi % step:
            off += length
            continue
        blk = data[off:off + length]
        off += length
        codec, rlen = blk[0], struct.unpack_from("<I", blk, 1)[0]
        payload = blk[5:length - 4]
        body = payload if codec == 0 else lz4_decompress(payload, rlen)
        pos = 0
        n, pos = varint(body, pos)
        c, pos = varint(body, pos)
        clens = []
        for _ in range(c):
            v, pos = varint(body, pos)
            clens.append(v)
        blocks_read += 1
        rows += n
        disk += length
        for ci, cl in enumerate(clens):
            col = body[pos:pos + cl]
            pos += cl
            raw[ci] += cl
            packed[ci] += lz4_size(col, hc_level)
            if not col:
                continue
            if ci == 0:
                encs[ci][INT_ENC.get(col[0], "?")] += 1
            elif ci == 1:
                encs[ci][BITS_ENC.get(col[0], "?")] += 1
            else:
                t = fields[ci - 2][1]
                nb = bits_len(col, n)
                vals = col[nb:]
                nn = n - popcount_nulls(col, n)
                if not vals:
                    encs[ci]["(all null)"] += 1
                    continue
                if t in ("int64", "timestamp"):
                    encs[ci][INT_ENC.get(vals[0], "?")] += 1
                elif t == "float64":
                    encs[ci][FLOAT_ENC.get(vals[0], "?")] += 1
                elif t == "bool":
                    encs[ci][BITS_ENC.get(vals[0], "?")] += 1
                else:
                    encs[ci][STR_ENC.get(vals[0], "?")] += 1
                    if vals[0] == 1:
                        d, _ = varint(vals, 1)
                        dict_ratio[ci][0] += d
                    else:
                        dict_ratio[ci][0] += nn
                    dict_ratio[ci][1] += nn
    total_packed = sum(packed.values())
    print("%s: %d blocks (%d read), %d rows read, %d bytes on disk in them, file %d bytes"
          % (path, len(lengths), blocks_read, rows, disk, len(data)))
    print("  %-26s %12s %12s %12s %7s %9s  %s" % (
        "column", "raw bytes", "raw B/row", "LZ4 alone", "share", "LZ4 B/row", "encoding")
          + ("  (LZ4 HC level %d)" % hc_level if hc_level > 0 else "  (LZ4 fast)"))
    for ci in range(len(names)):
        enc = ", ".join("%s %d" % kv for kv in encs[ci].most_common(3))
        if ci in dict_ratio and dict_ratio[ci][1]:
            enc += "; distinct/values in a block %.3f" % (dict_ratio[ci][0] / dict_ratio[ci][1])
        print("  %-26s %12d %12.2f %12d %6.1f%% %9.2f  %s" % (
            names[ci], raw[ci], raw[ci] / rows, packed[ci], 100.0 * packed[ci] / total_packed,
            packed[ci] / rows, enc))
    print("  %-26s %12d %12.2f %12d %6.1f%% %9.2f  (blocks as written: %d bytes, %.2f B/row)"
          % ("total", sum(raw.values()), sum(raw.values()) / rows, total_packed, 100.0,
             total_packed / rows, disk, disk / rows))


def main():
    p = argparse.ArgumentParser(description="Per-column bytes of strata segment files.")
    p.add_argument("files", nargs="+")
    p.add_argument("--blocks", type=int, default=0, help="read about this many blocks")
    p.add_argument("--hc", type=int, default=9, metavar="LEVEL",
                   help="estimate with LZ4 HC at LEVEL, as compaction writes (default 9); "
                        "0: LZ4 fast, as a flush writes")
    args = p.parse_args()
    for f in args.files:
        analyse(f, args.blocks, args.hc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
