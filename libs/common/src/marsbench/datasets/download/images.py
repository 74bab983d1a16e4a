"""One image of the paired set: fetched over HTTP with retries, then resized as img2dataset does.

The reference ran `img2dataset --image_size 512 --resize_mode center_crop --timeout 10 --retries 3`
(its `data_processing/paired_image_text_retrieval/img2dataset.sh`). What that does, and what this
module does in its place:

- **Fetch**: one try plus `retries` more. img2dataset retries any failure at once; here only
  failures that may pass are retried (connection errors, timeouts, HTTP 408/429/5xx), after an
  exponential backoff. Other HTTP statuses (404, 403, ...) fail at once. Redirects are followed.
  A response whose `X-Robots-Tag` says `noai`, `noimageai`, `noindex` or `noimageindex` is refused,
  as img2dataset refuses it by default.
- **Decode**: Pillow. Bytes it cannot decode fail the sample (never retried).
- **Resize** (`center_crop`): the shorter side is scaled to `image_size` (area averaging when
  shrinking, Lanczos when enlarging: img2dataset's cv2 `INTER_AREA` / `INTER_LANCZOS4`; Pillow's
  `BOX` is its area filter), then the centre `image_size` square is cut. Alpha is flattened onto
  white. `no`: the fetched bytes are kept as they are.
- **Encode**: JPEG at quality 95 (img2dataset's defaults), so members are `<key>.jpg`.
"""

from __future__ import annotations

import io
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import httpx
from PIL import Image, UnidentifiedImageError

ResizeMode = Literal["center_crop", "no"]
DISALLOWED_ROBOTS = frozenset({"noai", "noimageai", "noindex", "noimageindex"})
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
MAX_BACKOFF_S = 30.0
# Pillow's own guard against decompression bombs, made an error rather than a warning.
MAX_PIXELS = 178_956_970

# Waits that many seconds; what it returns is ignored (`threading.Event.wait` answers a bool).
Sleep = Callable[[float], object]


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    """How one URL is fetched. `timeout_s` bounds each connect/read; `deadline_s` one whole try."""

    timeout_s: float = 10.0
    retries: int = 3
    backoff_s: float = 1.0
    max_bytes: int = 64 * 1024 * 1024
    deadline_s: float = 60.0


@dataclass(frozen=True, slots=True)
class Fetched:
    """The outcome of fetching one URL: `data` on success, else `error` (and the last HTTP status)."""

    data: bytes | None
    error: str | None
    status: int | None
    attempts: int


@dataclass(frozen=True, slots=True)
class ProcessedImage:
    data: bytes
    ext: str  # without the dot
    width: int
    height: int
    original_width: int
    original_height: int


class ImageError(ValueError):
    """Bytes that are no usable image; the message says why."""


class _Refused(Exception):
    """A response that must not be retried (its message is the failure)."""


class _Retryable(Exception):
    """A failure that may pass on another try."""


def backoff_delay(attempt: int, base_s: float, rng: random.Random | None = None) -> float:
    """Seconds to wait before try `attempt + 1` (attempt counts from 1): base * 2^(attempt-1), +-25%."""
    delay = min(base_s * (2 ** (attempt - 1)), MAX_BACKOFF_S)
    jitter = (rng or random).uniform(0.75, 1.25)
    return delay * jitter


def robots_refusal(header: str | None) -> str | None:
    """Why an `X-Robots-Tag` value refuses the download (None when it allows it)."""
    if not header:
        return None
    directives = {part.strip().lower() for part in header.replace(";", ",").split(",")}
    # "googlebot: noai" style values name a user agent first; the directive still applies.
    directives |= {d.split(":", 1)[1].strip() for d in directives if ":" in d}
    refused = sorted(directives & DISALLOWED_ROBOTS)
    return f"X-Robots-Tag forbids it ({', '.join(refused)})" if refused else None


def _one_try(client: httpx.Client, url: str, policy: FetchPolicy) -> tuple[bytes, int]:
    started = time.monotonic()
    try:
        with client.stream("GET", url, timeout=policy.timeout_s) as response:
            status = response.status_code
            if status in RETRY_STATUSES:
                raise _Retryable(f"HTTP {status}")
            if status != 200:
                raise _Refused(f"HTTP {status}")
            refusal = robots_refusal(response.headers.get("x-robots-tag"))
            if refusal:
                raise _Refused(refusal)
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > policy.max_bytes:
                    raise _Refused(f"larger than {policy.max_bytes} bytes")
                if time.monotonic() - started > policy.deadline_s:
                    raise _Retryable(f"not complete after {policy.deadline_s:g} s")
                chunks.append(chunk)
            return b"".join(chunks), status
    except httpx.TimeoutException as exc:
        raise _Retryable(f"timed out ({type(exc).__name__})") from exc
    except httpx.TransportError as exc:
        raise _Retryable(f"{type(exc).__name__}: {exc}") from exc
    except httpx.InvalidURL as exc:
        raise _Refused(f"invalid URL: {exc}") from exc


def fetch(client: httpx.Client, url: str, policy: FetchPolicy, *, sleep: Sleep = time.sleep) -> Fetched:
    """GETs `url`, retrying what may pass (module docs); never raises for a failed download."""
    if not url.startswith(("http://", "https://")):
        return Fetched(None, f"not an http(s) URL: {url[:80]!r}", None, 0)
    last_status: int | None = None
    error = "not tried"
    for attempt in range(1, policy.retries + 2):
        try:
            data, status = _one_try(client, url, policy)
            return Fetched(data, None, status, attempt)
        except _Refused as exc:
            status_text = str(exc)
            last_status = int(status_text[5:]) if status_text.startswith("HTTP ") else last_status
            return Fetched(None, status_text, last_status, attempt)
        except _Retryable as exc:
            error = str(exc)
            if error.startswith("HTTP "):
                last_status = int(error[5:])
        if attempt <= policy.retries:
            sleep(backoff_delay(attempt, policy.backoff_s))
    return Fetched(None, f"{error} (after {policy.retries + 1} tries)", last_status, policy.retries + 1)


def _flatten(image: Image.Image) -> Image.Image:
    """RGB, with any transparency composited onto white."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def center_crop(image: Image.Image, size: int) -> Image.Image:
    """Shorter side to `size` (area filter down, Lanczos up), then the centre `size` x `size`."""
    width, height = image.size
    shorter = min(width, height)
    if shorter != size:
        scale = size / shorter
        new = (max(size, round(width * scale)), max(size, round(height * scale)))
        resample = Image.Resampling.BOX if shorter > size else Image.Resampling.LANCZOS
        image = image.resize(new, resample)
        width, height = image.size
    left, top = (width - size) // 2, (height - size) // 2
    return image.crop((left, top, left + size, top + size))


def process_image(
    data: bytes, *, image_size: int, resize_mode: ResizeMode, quality: int = 95
) -> ProcessedImage:
    """Decodes and (for `center_crop`) resizes and re-encodes one image; `ImageError` if unusable."""
    try:
        with Image.open(io.BytesIO(data)) as opened:
            original = opened.size
            if original[0] * original[1] > MAX_PIXELS:
                raise ImageError(f"{original[0]}x{original[1]} pixels is more than {MAX_PIXELS}")
            fmt = (opened.format or "").lower()
            opened.load()  # truncated or corrupt data fails here, not later
            if resize_mode == "no":
                ext = {"jpeg": "jpg", "png": "png"}.get(fmt)
                if ext is None:
                    raise ImageError(f"{fmt or 'unknown'} image kept as is would not be read (jpg/png only)")
                return ProcessedImage(data, ext, *original, *original)
            image = center_crop(_flatten(opened), image_size)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        if isinstance(exc, ImageError):
            raise
        raise ImageError(f"not a readable image ({type(exc).__name__}: {exc})") from exc
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return ProcessedImage(out.getvalue(), "jpg", image.width, image.height, *original)
