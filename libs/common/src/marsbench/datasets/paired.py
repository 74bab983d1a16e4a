"""Reader for the paired image-text data (Task 1 of the protocol).

The published folder holds WebDataset shards `000000.tar, 000001.tar, ...` as img2dataset writes
them (`<key>.jpg` beside `<key>.json`, the captions as top-level JSON fields), and optionally
`mars_vl_pairs.tsv`. What follows mirrors the reference reader (`CrossModalWDSDataset`):

- Shards: the files of the folder itself (not of subfolders) whose name ends in `.tar`, matched
  case-sensitively, in name order.
- Members: in archive order. A member's sample key is its path inside the tar up to the *last*
  dot (`os.path.splitext`, not WebDataset's first dot: `a.b.jpg` is key `a.b`); its extension is
  compared lower-cased. Only `.jpg`, `.jpeg`, `.png` (images), `.json` and `.txt` take part;
  every other member is ignored. The key is this member name, not the JSON's `key` field, and
  not the TSV's `key` column (the TSV only fed img2dataset; the reference never reads it).
- Pairing: parts gather per key anywhere in the shard, and a sample is emitted the moment it has
  both an image and a caption, so samples come out in the order they complete. A JSON caption
  replaces an earlier `.txt` one; a `.txt` never replaces a caption. A later image replaces an
  earlier one (there is no extension precedence: member order decides). Parts of a key that
  arrive after its sample was emitted start a new sample of that key, dropped unless it
  completes (so in img2dataset's member order `jpg, json, txt` the `.txt` is only a fallback).
- Captions: see `caption_from_json`. A `.txt` caption is its UTF-8 text (bad bytes dropped),
  stripped of surrounding white space; a JSON caption is taken as is.
- An image member that is empty (or, with `verify`, that Pillow cannot parse) is no image, as
  the reference's failed decode leaves the sample without one.

Where this reader departs from the reference, and why:

- A sample still missing its image or its caption at the end of its shard is reported to the
  `SkipLog` with the reason (the reference drops it silently).
- A key already emitted (from this or an earlier shard) is reported and skipped: record keys
  must be unique. The reference would embed both copies; img2dataset's keys never repeat.
- A damaged shard yields the samples completed before the damage, is reported, and reading goes
  on with the next shard (the reference stops with an exception).
- JSON that is no object, and caption fields that are not text, count as no caption (the
  reference raises from inside its data loader, or hands a non-string to the text encoder).
- A member name repeated within consecutive members of one key keeps its first copy (the
  shared tar reader's rule, reported as a shard issue); the reference would use the last.
- Row order: the reference loads with 4 workers that each read a quarter of the shards and
  interleave their batches, so its row order differs from this one (shards in order). The
  order changes nothing but the placement of exactly tied scores, which the reference's
  unstable sort leaves arbitrary anyway.

Image bytes are not decoded here (except `verify`, a Pillow parse check): that is the encoder's
job. Resumable units are the shard files, named by file name.
"""

from __future__ import annotations

import difflib
import functools
import json
import posixpath
from collections.abc import Callable, Collection, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from marsbench.datasets.confine import Confinement, RootsArg
from marsbench.datasets.errors import DatasetError
from marsbench.datasets.landform import fingerprint_of, image_problem
from marsbench.datasets.lookup import FileStamp, ItemNotFound, file_stamp, payload_text
from marsbench.datasets.records import ImageRecord, SkipLog
from marsbench.datasets.tar_shards import (
    MemberSpan,
    ShardIssue,
    index_tar_members,
    iter_tar_samples,
    read_member,
    scan_tar_members,
)

SHARD_SUFFIX = ".tar"  # matched case-sensitively, as the reference matches it
TSV_NAME = "mars_vl_pairs.tsv"
IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png"})
JSON_EXTENSION = ".json"
TEXT_EXTENSION = ".txt"
PART_EXTENSIONS: frozenset[str] = IMAGE_EXTENSIONS | {JSON_EXTENSION, TEXT_EXTENSION}
DEFAULT_CAPTION_KEY = "refined_caption"
# The caption fields of the published JSON (the reference's config offers the first two).
CAPTION_KEYS: tuple[str, ...] = ("ori_caption", "refined_caption", "qwen3_fused_caption")
NESTED_CAPTION_FIELD = "caption"
# The stored pair payload: the sample key, the caption the text vector is embedded from, the shard.
KEY_FIELD = "key"
CAPTION_FIELD = "caption"
SHARD_FIELD = "shard"
# Shards whose key -> image member index is kept for thumbnails.
_INDEXED_SHARDS = 64

CaptionSource = Literal["json", "txt"]
UnitDone = Callable[[str], None]
# Yields a unit's records, then returns whether the unit was read to its end.
UnitReader = Generator[ImageRecord, None, bool]
ImageCheck = Callable[[bytes], str | None]


class CaptionError(ValueError):
    """A JSON document holds no usable caption for the caption key; the message says why.

    `fields`: the document's field names when it is an object (top level, then `caption.<name>` for
    the fields of a `caption` object), so that a misspelt caption key can be reported with the keys
    that are there.
    """

    def __init__(self, message: str, fields: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.fields = fields


# How many samples' JSON fields a caption-key error lists.
_FIELD_SAMPLES = 5


@dataclass(frozen=True, slots=True)
class PairedSample:
    """One complete image-caption pair of a shard, as the reference would emit it."""

    key: str
    image: bytes
    caption: str
    caption_source: CaptionSource


@dataclass(frozen=True, slots=True)
class IncompleteSample:
    """A key whose parts never made a pair by the end of its shard, and why."""

    key: str
    reason: str
    # Set when the caption is missing because the JSON object lacks the caption key: its fields.
    caption_fields: tuple[str, ...] | None = None


# ----------------------------------------------------------------------------- pure helpers


def split_part_name(member: str) -> tuple[str, str]:
    """(sample key, lower-cased extension) of a member name, as `os.path.splitext` splits it.

    The extension keeps its dot and is "" when there is none; a leading dot of the file name
    starts no extension (`._x` has none, `._x.png` is key `._x`).
    """
    key, ext = posixpath.splitext(member)
    return key, ext.lower()


def caption_from_json(document: object, caption_key: str) -> str:
    """The caption of a decoded JSON document by the reference's rule; `CaptionError` if none.

    In order: the top-level field named `caption_key` when it is non-empty; else, when
    `caption` is an object, its field `caption_key`. (The protocol's third rule, `caption`
    itself when the key is `caption`, is the first rule for that key.) Empty values count as
    missing, because the reference tests them for truth.
    """
    if not isinstance(document, dict):
        raise CaptionError(f"the JSON is a {type(document).__name__}, not an object")
    try:
        return _caption_of_object(document, caption_key)
    except CaptionError as exc:
        nested = document.get(NESTED_CAPTION_FIELD)
        if caption_key in document or (isinstance(nested, dict) and caption_key in nested):
            raise  # there, but empty or not text: no misspelt key
        raise CaptionError(str(exc), json_fields(document)) from None


def json_fields(document: Mapping[str, object]) -> tuple[str, ...]:
    """Top-level field names, then `caption.<name>` for a `caption` object's fields."""
    nested = document.get(NESTED_CAPTION_FIELD)
    inner = [f"{NESTED_CAPTION_FIELD}.{name}" for name in nested] if isinstance(nested, dict) else []
    return (*(str(name) for name in document), *inner)


def _caption_of_object(document: dict[str, object], caption_key: str) -> str:
    value = document.get(caption_key)
    if value:
        return _text_or_error(value, caption_key)
    nested = document.get(NESTED_CAPTION_FIELD)
    if isinstance(nested, dict):
        value = nested.get(caption_key)
        if value:
            return _text_or_error(value, f"{NESTED_CAPTION_FIELD}.{caption_key}")
        raise CaptionError(f"no {caption_key!r} at top level or in the {NESTED_CAPTION_FIELD!r} object")
    if isinstance(nested, str) and nested:
        raise CaptionError(
            f"no {caption_key!r} at top level, and {NESTED_CAPTION_FIELD!r} is plain text "
            f"(only the caption key {NESTED_CAPTION_FIELD!r} selects it)"
        )
    raise CaptionError(f"no {caption_key!r} field and no {NESTED_CAPTION_FIELD!r} field")


def _text_or_error(value: object, field: str) -> str:
    if isinstance(value, str):
        return value
    raise CaptionError(f"field {field!r} is a {type(value).__name__}, not text")


def caption_from_json_bytes(data: bytes, caption_key: str) -> str:
    """`caption_from_json` of an encoded member; unreadable JSON is a `CaptionError` too.

    `json.loads` on bytes detects UTF-8/16/32 as the reference's `json.load` on a binary file
    does.
    """
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError
        raise CaptionError(f"unreadable JSON ({type(exc).__name__})") from exc
    return caption_from_json(document, caption_key)


def caption_from_text(data: bytes) -> str | None:
    """A `.txt` caption: UTF-8 with undecodable bytes dropped, stripped; None when empty."""
    text = data.decode("utf-8", errors="ignore").strip()
    return text or None


@dataclass(slots=True)
class _Pending:
    """The parts gathered so far for one key of a shard."""

    image: bytes | None = None
    caption: str | None = None
    source: CaptionSource = "json"  # where `caption` came from, once there is one
    image_problem: str | None = None
    caption_problem: str | None = None
    caption_fields: tuple[str, ...] | None = None  # the JSON's fields when it lacked the caption key

    def missing(self) -> str:
        lacks = []
        if self.image is None:
            lacks.append(f"no image ({self.image_problem})" if self.image_problem else "no image")
        if self.caption is None:
            lacks.append(f"no caption ({self.caption_problem})" if self.caption_problem else "no caption")
        return "; ".join(lacks)


def pair_members(
    members: Iterable[tuple[str, bytes]],
    caption_key: str,
    *,
    check_image: ImageCheck | None = None,
) -> Iterator[PairedSample | IncompleteSample]:
    """Pairs one shard's members, in archive order, the way the reference does (module docs).

    Yields each `PairedSample` as it completes, then one `IncompleteSample` per key that never
    completed, in the order the keys first appeared. `check_image` returns why image bytes are
    unusable (None when fine); empty bytes are never an image.
    """
    pending: dict[str, _Pending] = {}
    emitted: set[str] = set()
    for name, data in members:
        key, ext = split_part_name(name)
        if ext not in PART_EXTENSIONS:
            continue
        state = pending.setdefault(key, _Pending())
        if ext == JSON_EXTENSION:
            try:
                state.caption, state.source = caption_from_json_bytes(data, caption_key), "json"
            except CaptionError as exc:
                state.caption_problem = str(exc)  # an earlier .txt caption stays
                state.caption_fields = exc.fields or None
        elif ext == TEXT_EXTENSION:
            text = caption_from_text(data)
            if text is not None and state.caption is None:
                state.caption, state.source = text, "txt"
        else:
            problem = "empty image member" if not data else (check_image(data) if check_image else None)
            if problem is None:
                state.image = data
            else:
                state.image_problem = problem
        if state.image is not None and state.caption is not None:
            del pending[key]
            emitted.add(key)
            yield PairedSample(key=key, image=state.image, caption=state.caption, caption_source=state.source)
    for key, state in pending.items():
        if key not in emitted:  # leftovers of an emitted key are no lost sample: not reported
            fields = state.caption_fields if state.caption is None else None
            yield IncompleteSample(key=key, reason=state.missing(), caption_fields=fields)


def sample_payload(key: str, caption: str, shard: str) -> dict[str, Any]:
    """The stored payload; `caption` is also the text the indexer embeds as the text vector."""
    return {KEY_FIELD: key, CAPTION_FIELD: caption, SHARD_FIELD: shard}


def count_candidates(member_names: Iterable[str]) -> int:
    """Distinct sample keys among one shard's image, JSON and text members."""
    keys = set()
    for name in member_names:
        key, ext = split_part_name(name)
        if ext in PART_EXTENSIONS:
            keys.add(key)
    return len(keys)


# ----------------------------------------------------------------------------- file system


def _shards_in(root: Path) -> list[Path]:
    files = [p for p in root.iterdir() if p.name.endswith(SHARD_SUFFIX) and p.is_file()]
    return sorted(files, key=lambda p: p.name)


def _member_stream(
    path: Path, shard: str, on_issue: Callable[[ShardIssue], None]
) -> Iterator[tuple[str, bytes]]:
    """(member name, bytes) in archive order, rebuilt from the shared reader's samples.

    That reader splits names at the first dot, so `key + "." + ext` is the member name again.
    """
    for sample in iter_tar_samples(path, on_issue, shard=shard):
        for ext, data in sample.parts.items():
            yield f"{sample.key}.{ext}", data


# ----------------------------------------------------------------------------- the reader


class PairedDataset:
    """The image-caption pairs of one published paired `dataset/` folder, as an image source.

    Record keys are the sample keys; payloads are `{"key", "caption", "shard"}`, `caption`
    being the text the indexer embeds beside the image.
    """

    def __init__(self, root: Path, caption_key: str = DEFAULT_CAPTION_KEY, *, roots: RootsArg = None) -> None:
        self._root = Path(root)
        if not caption_key:
            raise ValueError("caption_key must be a non-empty field name")
        self._caption_key = caption_key
        # Links inside the folder must not lead out of the dataset roots (marsbench.datasets.confine).
        self._confine = Confinement.of(roots)
        self._confine.check(self._root)
        if not self._root.is_dir():
            raise DatasetError(f"paired dataset folder {self._root} does not exist or is not a folder")
        found = _shards_in(self._root)
        # A shard linking out of the roots is never opened: reported when the records are read.
        self._shards = [shard for shard in found if self._confine.allows(shard)]
        self._refused = [
            (shard.name, self._confine.problem(shard) or "") for shard in found if shard not in self._shards
        ]
        if not self._shards and self._refused:
            reasons = "; ".join(why for _, why in self._refused)
            raise DatasetError(f"every shard of {self._root} is refused: {reasons}")
        if not self._shards:
            hint = f" (only {TSV_NAME}: download the images with img2dataset first)" if self.tsv_path else ""
            raise DatasetError(
                f"no WebDataset shards (*{SHARD_SUFFIX}) in {self._root}{hint}: expected "
                f"000000{SHARD_SUFFIX}, 000001{SHARD_SUFFIX}, ... holding <key>.jpg/.png and <key>.json"
            )
        self._count: int | None = None

    @property
    def root(self) -> Path:
        return self._root

    @property
    def caption_key(self) -> str:
        return self._caption_key

    @property
    def tsv_path(self) -> Path | None:
        """The pairs TSV when present. Informational: the reference does not read it."""
        path = self._root / TSV_NAME
        return path if path.is_file() else None

    def units(self) -> list[str]:
        """Resumable units in reading order: the shard file names."""
        return [shard.name for shard in self._shards]

    def count(self) -> int:
        """Candidate samples before any skip: distinct keys of image/JSON/text members.

        From tar headers only (no member is read); kept for the life of this object. The
        reference counts `.json` members for its progress bar; the two agree on img2dataset
        output.
        """
        if self._count is None:
            self._count = sum(
                count_candidates(name for name, _ in scan_tar_members(shard).members)
                for shard in self._shards
            )
        return self._count

    def fingerprint(self) -> str:
        """Identifies this data variant: shard names and sizes, and the caption key."""
        entries = [(f"tar:{p.name}", p.stat().st_size) for p in self._shards]
        return fingerprint_of([*entries, (f"caption_key:{self._caption_key}", 0)])

    def iter_records(
        self,
        skips: SkipLog,
        *,
        verify: bool = False,
        skip_units: Collection[str] = (),
        on_unit_done: UnitDone | None = None,
    ) -> Iterator[ImageRecord]:
        """Streams the pairs in reading order; every unusable sample goes to `skips` by key.

        Skipped with a reason: a sample without image or caption, a key already yielded, and
        (with `verify`) an image Pillow cannot parse. A damaged shard yields what it could read
        and is reported under its name; problems with single members (links, a repeated part)
        are reported under `<shard>: <problem>`.

        Units in `skip_units` are not yielded; one that precedes a unit being read is still
        paired (not yielded) so that duplicate keys are decided as in an uninterrupted run.
        `on_unit_done(unit)` is called once the unit's last record has been handed out, and
        only for a unit read to its end without an archive failure, so that a resumed run
        retries any unit that failed part-way.
        """
        check = image_problem if verify else None
        for name, why in self._refused:
            skips.add(name, f"shard refused, skipped whole: {why}")
        skipped = frozenset(skip_units)
        seen: set[str] = set()
        unseen: list[Path] = []  # skipped shards whose keys are not yet in `seen`
        for shard in self._shards:
            if shard.name in skipped:
                unseen.append(shard)
                continue
            for earlier in unseen:
                seen.update(self._paired_keys(earlier, check))
            unseen.clear()
            # Only the folder's first shard, read in this pass, can show that no sample has the key.
            first = shard is self._shards[0]
            complete = yield from self._iter_shard(shard, seen, skips, check, fail_fast=first)
            if complete and on_unit_done is not None:
                on_unit_done(shard.name)

    def read_image(self, payload: Mapping[str, Any]) -> bytes:
        """The image of a stored pair (`shard`: its shard file name, `key`: its sample key).

        The sample's first image member: the one img2dataset writes, and the one the reader pairs
        unless a shard repeats a key's image. Only this folder's shards are looked in.
        ItemNotFound when there is no such image, DatasetError when the shard cannot be read.
        """
        key, shard_name = payload_text(payload, KEY_FIELD), payload_text(payload, SHARD_FIELD)
        shard = next((s for s in self._shards if s.name == shard_name), None)
        if shard is None:
            raise ItemNotFound(f"no shard {shard_name!r} in {self._root}")
        try:
            span = _image_spans(file_stamp(shard)).get(key)
            if span is None:
                raise ItemNotFound(f"no image of sample {key!r} in {shard}")
            return read_member(shard, span)
        except OSError as exc:
            raise DatasetError(f"cannot read the image of {key!r} from {shard}: {exc}") from exc

    def _iter_shard(
        self,
        shard: Path,
        seen: set[str],
        skips: SkipLog,
        check: ImageCheck | None,
        *,
        fail_fast: bool = False,
    ) -> UnitReader:
        """With `fail_fast`, a shard none of whose samples has a caption, because their JSON lacks the
        caption key, ends the reading with a DatasetError naming the key and the fields present (a
        misspelt `caption_key` would otherwise skip every sample of every shard)."""
        failed = False
        paired = 0
        incomplete: list[IncompleteSample] = []

        def report(issue: ShardIssue) -> None:
            nonlocal failed
            failed = failed or issue.fatal
            key = issue.shard if issue.fatal else f"{issue.shard}: {issue.reason}"
            skips.add(key, issue.reason)

        members = _member_stream(shard, shard.name, report)
        for item in pair_members(members, self._caption_key, check_image=check):
            if isinstance(item, IncompleteSample):
                skips.add(item.key, item.reason)
                incomplete.append(item)
                continue
            paired += 1
            if item.key in seen:
                skips.add(item.key, f"duplicate key (an earlier sample has it); this copy is in {shard.name}")
                continue
            seen.add(item.key)
            payload = sample_payload(item.key, item.caption, shard.name)
            yield ImageRecord(key=item.key, image=item.image, payload=payload, unit=shard.name)
        if fail_fast and not paired:
            problem = caption_key_problem(self._caption_key, shard.name, incomplete)
            if problem is not None:
                raise DatasetError(problem)
        return not failed

    def _paired_keys(self, shard: Path, check: ImageCheck | None) -> Iterator[str]:
        """The keys a shard's complete pairs carry (what an earlier run may have yielded)."""
        members = _member_stream(shard, shard.name, lambda issue: None)
        for item in pair_members(members, self._caption_key, check_image=check):
            if isinstance(item, PairedSample):
                yield item.key


def caption_key_problem(caption_key: str, shard: str, incomplete: Sequence[IncompleteSample]) -> str | None:
    """Why a shard that paired nothing did so, when every one of its samples lacks the caption key
    (None otherwise): the key, and the fields of the first samples' JSON, with a likely meant key."""
    lacking = [item.caption_fields for item in incomplete if item.caption_fields is not None]
    if not lacking or len(lacking) != len(incomplete):
        return None
    fields = list(dict.fromkeys(name for names in lacking[:_FIELD_SAMPLES] for name in names))
    top = [name for name in fields if not name.startswith(f"{NESTED_CAPTION_FIELD}.")]
    inner = [name.split(".", 1)[1] for name in fields if name.startswith(f"{NESTED_CAPTION_FIELD}.")]
    known = [name for name in dict.fromkeys([*top, *inner]) if name != NESTED_CAPTION_FIELD]
    close = difflib.get_close_matches(caption_key, known, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    nested = f" and {NESTED_CAPTION_FIELD!r} object fields {', '.join(inner)}" if inner else ""
    return (
        f"caption key {caption_key!r} is in none of the {len(incomplete)} samples of the first shard "
        f"{shard} (nothing would be indexed): the first samples' JSON has top-level fields "
        f"{', '.join(top) or '(none)'}{nested}{hint}"
    )


@functools.lru_cache(maxsize=_INDEXED_SHARDS)
def _image_spans(shard: FileStamp) -> dict[str, MemberSpan]:
    """Sample key -> its first image member, for one shard (keys split as `split_part_name` does)."""
    spans: dict[str, MemberSpan] = {}
    for member, span in index_tar_members(Path(shard.path)).items():
        key, ext = split_part_name(member)
        if ext in IMAGE_EXTENSIONS and span.size > 0:
            spans.setdefault(key, span)
    return spans
