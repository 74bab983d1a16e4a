"""Reads WebDataset tar shards in place: samples stream out one at a time, nothing is extracted.

WebDataset convention: a member's sample key is its path up to the first dot of its file name
and the rest of the name is the part's extension (`a/b/x.seg.png` -> key `a/b/x`, ext `seg.png`);
consecutive members with one key form one sample. Extensions are kept as written (no
lower-casing): callers that care about case decide themselves.

A damaged shard never raises: the reader yields every sample it could read, then reports why it
stopped as a fatal `ShardIssue`. Smaller problems (a member that is not a regular file, a part
repeated within a sample) are reported as non-fatal issues and reading goes on. Python's
`tarfile` ends iteration silently on a truncated or garbled header, so after the last member the
reader checks for the end-of-archive block itself.

Shards are read with `tarfile` in random-access mode; `scan_tar_members` lists members from
their headers alone, with a small parser of its own, for counting, and `index_tar_members` uses
that parser to locate members for `read_member` (one image of a shard, for a thumbnail). All take
uncompressed tar only, which is what the published shards are.
"""

from __future__ import annotations

import os
import re
import struct
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NamedTuple

_BLOCK = tarfile.BLOCKSIZE
_ZERO_BLOCK = bytes(_BLOCK)
# What tarfile and the file system raise for unreadable or damaged archives.
_READ_ERRORS = (tarfile.TarError, OSError, EOFError, ValueError, UnicodeError)
# Header type flags: regular files (as tarfile counts them), and headers that only describe
# the next member (GNU long name and link, pax extended and global).
_REGULAR_TYPES = frozenset({b"0", b"\0", b"7", b"S"})
_META_TYPES = frozenset({b"L", b"K", b"x", b"g"})
_POSIX_MAGIC = b"ustar\x0000"
_PAX_RECORD = re.compile(rb"(\d+) ([^=]+)=")


class TarSample(NamedTuple):
    """One sample: its key and its parts, extension -> bytes, in member order."""

    key: str
    parts: dict[str, bytes]


@dataclass(frozen=True, slots=True)
class ShardIssue:
    """A problem in one shard. `fatal`: reading stopped there; no later member was read."""

    shard: str
    reason: str
    fatal: bool


IssueHandler = Callable[[ShardIssue], None]


class MemberSpan(NamedTuple):
    """Where one member's bytes lie in its archive: byte offset and length."""

    offset: int
    size: int


class _Entry(NamedTuple):
    name: str
    size: int
    offset: int  # of the member's data
    sparse: bool


@dataclass(frozen=True, slots=True)
class ShardListing:
    """A shard's regular-file members from their headers alone: (name, size) in archive order."""

    members: list[tuple[str, int]]
    problem: str | None  # why the listing stopped early, None when the archive ended cleanly


# ----------------------------------------------------------------------------- pure helpers


def split_member_name(name: str) -> tuple[str, str] | None:
    """(key, ext) of a member name by the WebDataset convention, or None when it names no part.

    None for a file name without a dot, one that starts with a dot (such as macOS `._x.png`
    resource forks) or one that ends with it, as WebDataset's own pattern requires a non-empty
    stem.
    """
    folder, slash, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    if not stem or not dot or not ext:
        return None
    return folder + slash + stem, ext


def end_problem(block: bytes, offset: int) -> str | None:
    """Why an archive whose last member header would start at `offset` did not end cleanly.

    `block` is what the file holds at `offset` (up to one block). A clean archive has a zero
    block there; `tarfile` reports nothing for the other cases.
    """
    if len(block) == _BLOCK and block == _ZERO_BLOCK:
        return None
    if not block:
        return f"the archive ends at byte {offset} without an end-of-archive block (truncated?)"
    if len(block) < _BLOCK:
        return f"truncated member header at byte {offset}"
    return f"invalid member header at byte {offset} (corrupt data)"


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OSError):
        return f"unreadable ({exc.strerror or text})"
    return text


# ----------------------------------------------------------------------------- readers


def _end_of(raw: BinaryIO, tar: tarfile.TarFile) -> str | None:
    raw.seek(tar.offset)
    return end_problem(raw.read(_BLOCK), tar.offset)


def iter_tar_samples(path: Path, on_issue: IssueHandler, *, shard: str | None = None) -> Iterator[TarSample]:
    """Streams the samples of one shard in archive order, reading each member's bytes once.

    `shard` names the shard in issues (default: the path). Directories are skipped silently;
    other non-regular members (links, devices) and members whose name has no extension are
    skipped with a non-fatal issue. A part repeated within one sample keeps its first copy.
    """
    label = shard if shard is not None else str(path)
    key: str | None = None
    parts: dict[str, bytes] = {}
    samples = 0
    failure: str | None = None
    try:
        with path.open("rb") as raw, tarfile.open(fileobj=raw, mode="r:") as tar:
            for member in tar:
                if member.isdir():
                    continue
                if not member.isfile():
                    on_issue(ShardIssue(label, f"member {member.name!r} is not a regular file", False))
                    continue
                split = split_member_name(member.name)
                if split is None:
                    on_issue(ShardIssue(label, f"member {member.name!r} has no extension", False))
                    continue
                member_key, ext = split
                file = tar.extractfile(member)
                data = file.read() if file is not None else b""
                if member_key != key:
                    if key is not None and parts:
                        yield TarSample(key, parts)
                        samples += 1
                    key, parts = member_key, {}
                if ext in parts:
                    on_issue(
                        ShardIssue(label, f"member {member.name!r} repeats a part; kept the first", False)
                    )
                    continue
                parts[ext] = data
            failure = _end_of(raw, tar)
    except _READ_ERRORS as exc:
        failure = _describe(exc)
    if key is not None and parts:
        # What was read before a failure still counts; a part lost to it shows as a missing part.
        yield TarSample(key, parts)
        samples += 1
    if failure is not None:
        on_issue(ShardIssue(label, f"{failure}; read {samples} sample(s) before it", True))


def scan_tar_members(path: Path) -> ShardListing:
    """Lists a shard's regular-file members from their headers alone, skipping over the data.

    A small header parser of its own (ustar, GNU long names, pax `path`/`size` records) rather
    than `tarfile`, whose full header decoding costs about ten times as much per member: this
    is what counting a million-tile set spends its time on.
    """
    entries, problem = _scan_file(path)
    return ShardListing(members=[(entry.name, entry.size) for entry in entries], problem=problem)


def index_tar_members(path: Path) -> dict[str, MemberSpan]:
    """Where each regular member's bytes lie, by member name, from the headers alone.

    For reading single members later (`read_member`) without walking the archive again. A name
    repeated in the archive keeps its first copy, as the sample reader does. Sparse members are
    left out: their bytes are not stored in one piece. A damaged archive gives the members listed
    before the damage.
    """
    index: dict[str, MemberSpan] = {}
    for entry in _scan_file(path)[0]:
        if not entry.sparse:
            index.setdefault(entry.name, MemberSpan(entry.offset, entry.size))
    return index


def read_member(path: Path, span: MemberSpan) -> bytes:
    """The bytes of one member found by `index_tar_members`; OSError when the shard is shorter."""
    with path.open("rb", buffering=0) as raw:
        data = os.pread(raw.fileno(), span.size, span.offset)
    if len(data) != span.size:
        raise OSError(f"{path}: member at byte {span.offset} is cut short (the shard changed?)")
    return data


def _scan_file(path: Path) -> tuple[list[_Entry], str | None]:
    entries: list[_Entry] = []
    try:
        with path.open("rb", buffering=0) as raw:
            problem = _scan_headers(raw.fileno(), os.fstat(raw.fileno()).st_size, entries)
    except OSError as exc:
        problem = _describe(exc)
    return entries, problem


def _padded(size: int) -> int:
    return -(-size // _BLOCK) * _BLOCK


def _number(field: bytes) -> int:
    if field[0] == 0o200:  # base-256, for sizes beyond the octal field's 8 GiB
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    return int(text or b"0", 8)  # ValueError for a garbled field


def _text(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _checksum_ok(block: bytes) -> bool:
    stored = _number(block[148:156])
    unsigned = 256 + sum(block) - sum(block[148:156])  # the checksum field counts as spaces
    if stored == unsigned:
        return True
    signed_bytes: tuple[int, ...] = struct.unpack_from("148b8x356b", block)
    signed = 256 + sum(signed_bytes)  # some old writers sum signed bytes
    return stored == signed


def _pax_records(data: bytes) -> dict[str, str]:
    records: dict[str, str] = {}
    pos = 0
    while (match := _PAX_RECORD.match(data, pos)) is not None:
        length = int(match.group(1))
        if length <= 0:
            raise ValueError("invalid pax record")
        value = data[match.end() : match.start() + length - 1]
        records[match.group(2).decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos = match.start() + length
    return records


def _scan_headers(fd: int, file_size: int, members: list[_Entry]) -> str | None:
    """Appends each regular file to `members`; returns why it stopped early."""
    offset = 0
    long_name: str | None = None
    pax: dict[str, str] = {}
    while True:
        block = os.pread(fd, _BLOCK, offset)
        if offset == 0 and not block:
            return "empty file"
        if len(block) < _BLOCK or block == _ZERO_BLOCK:
            return end_problem(block, offset)
        try:
            if not _checksum_ok(block):
                raise ValueError("bad checksum")
            kind = block[156:157]
            size = _number(block[124:136])
            if kind in _META_TYPES:
                data = os.pread(fd, size, offset + _BLOCK)
                if len(data) < size:
                    return f"unexpected end of data in a header extension at byte {offset}"
                if kind == b"L":
                    long_name = _text(data)
                elif kind == b"x":
                    pax = _pax_records(data)
                offset += _BLOCK + _padded(size)
                continue
            size = int(pax["size"]) if "size" in pax else size
        except ValueError:
            return f"invalid member header at byte {offset} (corrupt data)"
        name = _text(block[:100])
        if block[257:265] == _POSIX_MAGIC and (prefix := _text(block[345:500])):
            name = f"{prefix}/{name}"
        name = pax.get("path", long_name or name)
        sparse = kind == b"S" or any(key.startswith("GNU.sparse.") for key in pax)
        long_name, pax = None, {}
        offset += _BLOCK
        extended = kind == b"S" and block[482]
        while extended:  # old GNU sparse: more sparse maps precede the data
            extended = os.pread(fd, _BLOCK, offset)[504:505] not in (b"", b"\0")
            offset += _BLOCK
        data_offset = offset
        offset += _padded(size)
        if offset > file_size:
            return f"unexpected end of data in member {name!r}"
        if kind in _REGULAR_TYPES and not name.endswith("/"):
            members.append(_Entry(name, size, data_offset, sparse))
