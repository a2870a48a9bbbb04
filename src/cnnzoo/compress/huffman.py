"""A small canonical Huffman coder: Deep Compression's third stage (Han et al. 2016, Section 4).

Section 4 Huffman-codes the quantized weights' cluster indices and the sparse structure's index
differences: both are far from uniform (a few clusters hold most weights, short gaps are common),
so a variable-length prefix code stores them in fewer bits than their fixed width.

Why our own: Python's standard library has no Huffman coder, and the packages that have one
either code Python objects one at a time (far too slow for millions of indices) or are a new
compiled dependency for forty lines of work.  This one is numpy-vectorised where it can be:

* :func:`code_lengths` builds the code with a heap (the textbook algorithm) and limits the
  longest code to :data:`MAX_CODE_LENGTH` bits by moving leaves up the tree the way JPEG's
  Annex K.3 does, so that the decoder's lookup table stays small (2^15 entries at most) and the
  lengths fit in four bits each;
* codes are *canonical* (ordered by length, then symbol): the code lengths alone define the code,
  which is all the compressed file has to store;
* :func:`encode` writes all codes at once (one numpy pass per bit position); :func:`decode`
  looks up every bit position's code at once and follows the chain of code starts by pointer
  doubling (:func:`_chain_of_starts`), then checks that the stream holds exactly what was promised.

Bad input raises :class:`HuffmanError` (a :class:`~cnnzoo.errors.CnnzooError`), one line.
Torch-free.
"""

from __future__ import annotations

import heapq

import numpy as np

from cnnzoo.errors import CnnzooError

#: the longest code (DEFLATE's limit too): lengths fit a nibble, the decoding table 2^15 entries
MAX_CODE_LENGTH = 15

#: bits decoded per stretch (bounds the decoder's working memory: a few arrays of this length)
_CHUNK_BITS = 1 << 20
#: pointer-doubling levels: the decoder walks 2^_LEVELS codes per Python step
_LEVELS = 6


class HuffmanError(CnnzooError):
    """A Huffman-coded stream or code table that is truncated or corrupt."""


# ------------------------------------------------------------------------------------------
# the code
# ------------------------------------------------------------------------------------------


def code_lengths(counts, limit: int = MAX_CODE_LENGTH) -> np.ndarray:
    """Each symbol's code length in bits (0: the symbol does not occur), longest ``limit``.

    ``counts[s]`` is how often symbol ``s`` occurs.  A lone symbol gets a 1-bit code.
    """
    counts = np.asarray(counts, dtype=np.int64)
    lengths = np.zeros(len(counts), dtype=np.uint8)
    present = np.flatnonzero(counts > 0)
    if len(present) > 2**limit:
        raise ValueError(f"{len(present)} symbols do not fit codes of at most {limit} bits")
    if len(present) == 1:
        lengths[present] = 1
        return lengths
    if len(present) == 0:
        return lengths
    # the textbook merge: every merge puts the symbols of both subtrees one level deeper
    depth = np.zeros(len(counts), dtype=np.int64)
    heap = [(int(counts[s]), int(s), [int(s)]) for s in present]
    heapq.heapify(heap)
    while len(heap) > 1:
        count_a, tie_a, members_a = heapq.heappop(heap)
        count_b, tie_b, members_b = heapq.heappop(heap)
        merged = members_a + members_b
        depth[merged] += 1
        heapq.heappush(heap, (count_a + count_b, min(tie_a, tie_b), merged))
    if depth.max() > limit:
        depth = _limited(depth, counts, present, limit)
    lengths[present] = depth[present]
    return lengths


def _limited(depth: np.ndarray, counts: np.ndarray, present: np.ndarray, limit: int) -> np.ndarray:
    """Code lengths of at most ``limit`` bits (JPEG Annex K.3's adjustment of the length counts).

    A pair of leaves at the deepest level moves up: one takes its parent's place, the other
    becomes the child of a leaf from a shallower level that turns into an inner node.  The Kraft
    sum stays exactly 1.  The new lengths go to the symbols in order of frequency.
    """
    longest = int(depth.max())
    per_length = np.bincount(depth[present], minlength=longest + 1).astype(np.int64)
    for length in range(longest, limit, -1):
        while per_length[length] > 0:
            shallower = length - 2
            while per_length[shallower] == 0:
                shallower -= 1
            per_length[length] -= 2
            per_length[length - 1] += 1
            per_length[shallower + 1] += 2
            per_length[shallower] -= 1
    order = present[np.lexsort((present, -counts[present]))]  # most frequent first
    new = np.zeros_like(depth)
    new[order] = np.repeat(np.arange(len(per_length)), per_length)[: len(order)]
    return new


def canonical_codes(lengths) -> np.ndarray:
    """The canonical code of each symbol (its ``lengths[s]`` low bits; 0 for absent symbols)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    codes = np.zeros(len(lengths), dtype=np.int64)
    code, previous = 0, 0
    for symbol in np.lexsort((np.arange(len(lengths)), lengths)):
        length = int(lengths[symbol])
        if length == 0:
            continue
        code <<= length - previous
        codes[symbol] = code
        code += 1
        previous = length
    return codes


def check_lengths(lengths, what: str = "Huffman code table") -> np.ndarray:
    """``lengths`` as an array, checked to describe a prefix code (a corrupt table is an error)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.size and (lengths.min() < 0 or lengths.max() > MAX_CODE_LENGTH):
        raise HuffmanError(f"{what} is corrupt (a code longer than {MAX_CODE_LENGTH} bits)")
    used = lengths[lengths > 0]
    kraft = int(np.sum(np.left_shift(1, MAX_CODE_LENGTH - used))) if used.size else 0
    if kraft > 1 << MAX_CODE_LENGTH or (used.size > 1 and kraft != 1 << MAX_CODE_LENGTH):
        raise HuffmanError(f"{what} is corrupt (the code lengths do not form a complete prefix code)")
    return lengths


# ------------------------------------------------------------------------------------------
# streams
# ------------------------------------------------------------------------------------------


def encode(symbols, lengths) -> bytes:
    """The symbols' codes, concatenated most significant bit first, padded with zeros to a byte."""
    symbols = np.asarray(symbols, dtype=np.int64).ravel()
    if symbols.size == 0:
        return b""
    lengths = np.asarray(lengths, dtype=np.int64)
    sizes = lengths[symbols]
    if (sizes == 0).any():
        raise ValueError("a symbol without a code was given to encode")
    values = canonical_codes(lengths)[symbols]
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    bits = np.zeros(int(sizes.sum()), dtype=np.uint8)
    for position in range(int(sizes.max())):  # bit `position` of every code that long, at once
        has = sizes > position
        shift = sizes[has] - 1 - position
        bits[starts[has] + position] = (values[has] >> shift) & 1
    return np.packbits(bits).tobytes()


def _chain_of_starts(sizes: np.ndarray, most: int) -> np.ndarray:
    """Where the codes start in a stretch whose first code starts at 0, given each bit's code length there.

    Each start is the one before plus its code's length: a chain, sequential by nature.  It is
    followed by pointer doubling instead of one symbol per Python step: ``jumps[k][i]`` is the
    start 2^k codes after ``i`` (``span`` once past the stretch), the chain is walked
    2^_LEVELS codes per step and then filled in level by level, all in numpy.  A bit that starts
    no code (length 0) is given length 1: the caller stops at the first such start.
    """
    span = len(sizes)
    step = np.minimum(np.arange(span, dtype=np.int32) + np.maximum(sizes, 1).astype(np.int32), span)
    jumps = [np.append(step, np.int32(span))]
    for _ in range(_LEVELS):
        jumps.append(jumps[-1][jumps[-1]])
    top, walked = jumps[-1], [0]
    while top[walked[-1]] < span and len(walked) << _LEVELS < most:
        walked.append(int(top[walked[-1]]))
    chain = np.array(walked, dtype=np.int32)
    for level in reversed(range(_LEVELS)):
        both = np.empty(2 * len(chain), dtype=np.int32)
        both[0::2], both[1::2] = chain, jumps[level][chain]
        chain = both[both < span]  # only a last start can leave the stretch
    return chain[:most]


def decode(data: bytes, lengths, count: int, what: str = "Huffman stream") -> np.ndarray:
    """``count`` symbols read from ``data``; a stream that ends early or holds no valid code is an error."""
    lengths = check_lengths(lengths, f"{what}'s code table")
    out = np.zeros(count, dtype=np.int64)
    if count == 0:
        return out
    present = np.flatnonzero(lengths)
    if present.size == 0:
        raise HuffmanError(f"{what} is corrupt (no code for its {count} symbols)")
    width = int(lengths.max())
    # the table: every `width`-bit window starting with a code gives that code's symbol and length
    table_symbol = np.full(1 << width, -1, dtype=np.int64)
    table_length = np.zeros(1 << width, dtype=np.int64)
    codes = canonical_codes(lengths)
    for symbol in present:
        length = int(lengths[symbol])
        first = int(codes[symbol]) << (width - length)
        table_symbol[first : first + (1 << (width - length))] = symbol
        table_length[first : first + (1 << (width - length))] = length
    raw = np.frombuffer(data, dtype=np.uint8)
    total = 8 * len(raw)
    # the 32 bits from each byte on (zeros past the end): any bit's `width`-bit window is in the word of its byte
    padded = np.concatenate((raw, np.zeros(4, dtype=np.uint8))).astype(np.uint64)
    words = padded[:-3] << 24 | padded[1:-2] << 16 | padded[2:-1] << 8 | padded[3:]
    position, done = 0, 0
    while done < count:
        if position >= total:
            raise HuffmanError(f"{what} is truncated ({done} of {count} symbols)")
        # every bit of the next stretch read as the start of a code: its symbol and length
        span = min(total, position + _CHUNK_BITS) - position
        at = np.arange(position, position + span, dtype=np.uint64)
        windows = (((words[at >> 3] << (at & 7)) & 0xFFFFFFFF) >> (32 - width)).astype(np.int64)
        symbols, sizes = table_symbol[windows], table_length[windows]
        starts = _chain_of_starts(sizes, count - done)
        found = symbols[starts]
        if (found < 0).any():
            first = int(starts[np.argmax(found < 0)])
            raise HuffmanError(f"{what} is corrupt (no code matches at bit {position + first})")
        out[done : done + len(starts)] = found
        done += len(starts)
        position += int(starts[-1] + sizes[starts[-1]])
        if position > total:
            raise HuffmanError(f"{what} is truncated ({done - 1} of {count} symbols)")
    left = total - position  # the padding: fewer than 8 bits, all zero, at the end of the last byte
    if left >= 8 or (left and int(raw[-1]) & ((1 << left) - 1)):
        raise HuffmanError(f"{what} is corrupt (bits left over after its {count} symbols)")
    return out


# ------------------------------------------------------------------------------------------
# the code table, as stored
# ------------------------------------------------------------------------------------------


def pack_lengths(lengths) -> bytes:
    """The code lengths in four bits each, trailing absent symbols left out (canonical codes need no more)."""
    lengths = np.asarray(lengths, dtype=np.uint8)
    used = np.flatnonzero(lengths)
    lengths = lengths[: used[-1] + 1] if used.size else lengths[:0]
    if len(lengths) % 2:
        lengths = np.concatenate((lengths, [0])).astype(np.uint8)
    return ((lengths[0::2] << 4) | lengths[1::2]).astype(np.uint8).tobytes()


def unpack_lengths(data: bytes, alphabet: int, what: str = "Huffman code table") -> np.ndarray:
    """The code lengths of an ``alphabet``-symbol code from :func:`pack_lengths`' bytes."""
    packed = np.frombuffer(data, dtype=np.uint8)
    lengths = np.empty(2 * len(packed), dtype=np.int64)
    lengths[0::2], lengths[1::2] = packed >> 4, packed & 15
    if len(lengths) > alphabet + 1 or lengths[alphabet:].any():
        raise HuffmanError(f"{what} is corrupt (codes for more than its {alphabet} symbols)")
    out = np.zeros(alphabet, dtype=np.int64)
    out[: min(alphabet, len(lengths))] = lengths[:alphabet]
    return check_lengths(out, what)
