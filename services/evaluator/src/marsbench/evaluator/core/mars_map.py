"""What the search page draws under and beside the hits: a basemap and the ground-truth sites.

Both come from the dataset a collection was indexed from, found as the thumbnails find it (the
collection's latest indexing job, `PointImages.job`), and confined the same way: the dataset folder
goes through `confine` (403 `PathNotAllowed` outside the dataset roots) and each file read through
`Confinement.check`, so a link inside the folder that leads out of the roots is never opened.

Basemap: the first image in the dataset's `mars_map/` folder (sorted by name; .png, .jpg, .jpeg,
.tif, .tiff, .webp), taken as a whole-planet equirectangular map. The reference reads its map as a
2644 x 1322 plot placed at pixel (158, 68) of a larger figure (`lonlat_to_pixel` in its
geolocalization evaluator); an image that is not 2:1 but holds that box is cropped to it. The
result is re-encoded as a JPEG at most `MAX_BASEMAP_PX` wide (a browser cannot show TIFF). Without
a usable one (no job, no `mars_map/`, an image that does not decode, a link out of the roots) the
bundled synthetic relief (`libs/common/src/marsbench/assets/basemap/mars-relief.jpg`, made by
`marsbench.datasets.synth._basemap`) is served instead; the `X-Marsbench-Basemap` header says which
(`dataset:<file>` or `bundled`) and `X-Marsbench-Basemap-Note` why a dataset map was not used.

Ground-truth sites: `ground_truth/<landform>.csv` (columns lon, lat) of a geolocalization dataset,
read by the geo reader's `load_ground_truth` (unusable rows skipped and counted).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from marsbench.assets import BASEMAP
from marsbench.datasets.confine import Confinement, OutsideRoots
from marsbench.datasets.errors import DatasetError
from marsbench.datasets.geo import GROUND_TRUTH_DIR, ground_truth_path, landforms, load_ground_truth
from marsbench.datasets.lookup import is_plain_name
from marsbench.datasets.records import SkipLog
from marsbench.evaluator.core.errors import ImageUnavailable, PointNotFound
from marsbench.evaluator.core.thumbnails import BoundedCache, Confine, PointImages
from marsbench.schemas.jobs import TaskName
from marsbench.store import CollectionNotFound, VectorStore

MARS_MAP_DIR = "mars_map"
MAP_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp")
MAX_BASEMAP_PX = 2048  # wide: the page's map is a few hundred CSS pixels, zoomed up to ~10x
BASEMAP_QUALITY = 85
# The reference's map geometry (evaluators/geolocalization_evaluator.py): plot size and offset.
REFERENCE_PLOT = (158, 68, 2644, 1322)  # x, y, width, height in pixels

_basemaps: BoundedCache[tuple[str, int, int], bytes] = BoundedCache(4)


class SitesUnavailable(ImageUnavailable):
    """409: the collection's dataset has no ground truth to draw (not geo, no job, unreadable)."""


class LandformNotFound(PointNotFound):
    """404: the dataset has no `ground_truth/<landform>.csv`."""


@dataclass(frozen=True, slots=True)
class Basemap:
    data: bytes  # JPEG
    source: str  # "dataset:<file name>" or "bundled"
    note: str | None = None  # why the dataset's map was not used, when it was not


def bundled_basemap_path() -> Path:
    """The map the shared library ships (`marsbench.assets`)."""
    return BASEMAP


def bundled_basemap() -> Basemap:
    return Basemap(bundled_basemap_path().read_bytes(), "bundled")


def equirectangular_jpeg(data: bytes, max_px: int = MAX_BASEMAP_PX) -> bytes:
    """`data` (any image Pillow reads) as a JPEG of the whole-planet plot, at most `max_px` wide.

    Raises ValueError for bytes that do not decode."""
    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.load()
            image: Image.Image = opened  # crop, convert and resize return plain images
            width, height = image.size
            x, y, plot_w, plot_h = REFERENCE_PLOT
            if abs(width - 2 * height) > 0.005 * width and width >= x + plot_w and height >= y + plot_h:
                image = image.crop((x, y, x + plot_w, y + plot_h))  # the reference's plot box
            if image.mode != "RGB":
                image = image.convert("RGB")
            if image.width > max_px:
                image = image.resize((max_px, max(1, round(image.height * max_px / image.width))))
            out = io.BytesIO()
            image.save(out, format="JPEG", quality=BASEMAP_QUALITY)
    except Exception as exc:  # Pillow signals bad data with many types
        raise ValueError(f"{type(exc).__name__}: {exc}") from exc
    return out.getvalue()


class MarsMaps:
    """Basemaps and ground-truth sites of collections (see the module docs)."""

    def __init__(self, store: VectorStore, images: PointImages, roots: tuple[Path, ...] = ()) -> None:
        self._store = store
        self._images = images
        self._confinement = Confinement.of(roots)

    def _folder(self, collection: str, confine: Confine) -> tuple[TaskName, Path]:
        try:
            self._store.collection_info(collection)
        except CollectionNotFound:
            raise PointNotFound(f"no collection {collection!r}; GET /v1/collections lists them") from None
        job = self._images.job(collection)  # ImageUnavailable (409) without a job or an indexer
        return job.task, confine(job.dataset_dir)  # PathNotAllowed (403) outside the dataset roots

    # -- the basemap ---------------------------------------------------------------------------

    def basemap(self, collection: str, confine: Confine) -> Basemap:
        try:
            _, folder = self._folder(collection, confine)
        except ImageUnavailable as exc:  # no job names the dataset: the map still needs a background
            return Basemap(bundled_basemap().data, "bundled", str(exc))
        folder_map = folder / MARS_MAP_DIR
        if not folder_map.is_dir():
            return Basemap(bundled_basemap().data, "bundled", f"the dataset has no {MARS_MAP_DIR}/ folder")
        notes: list[str] = []
        for path in sorted(p for p in folder_map.iterdir() if p.suffix.lower() in MAP_EXTENSIONS):
            try:
                self._confinement.check(path)
                stat = path.stat()
                key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
                cached = _basemaps.get(key)
                if cached is None:
                    cached = equirectangular_jpeg(path.read_bytes())
                    _basemaps.put(key, cached)
                return Basemap(cached, f"dataset:{path.name}")
            except (OutsideRoots, OSError, ValueError) as exc:
                notes.append(f"{MARS_MAP_DIR}/{path.name}: {exc}")
        why = "; ".join(notes) or f"{MARS_MAP_DIR}/ holds no map image ({', '.join(MAP_EXTENSIONS)})"
        return Basemap(bundled_basemap().data, "bundled", why)

    # -- ground-truth sites --------------------------------------------------------------------

    def _geo_folder(self, collection: str, confine: Confine) -> Path:
        try:
            task, folder = self._folder(collection, confine)
        except ImageUnavailable as exc:
            raise SitesUnavailable(f"no ground truth for {collection!r}: {exc}") from exc
        if task is not TaskName.GEOLOCALIZATION:
            raise SitesUnavailable(
                f"{collection!r} is a {task.value} collection: only geolocalization datasets have "
                f"{GROUND_TRUTH_DIR}/ sites"
            )
        return folder

    def landforms(self, collection: str, confine: Confine) -> tuple[Path, list[str]]:
        folder = self._geo_folder(collection, confine)
        try:
            return folder, landforms(folder)
        except (DatasetError, OSError) as exc:
            raise SitesUnavailable(f"cannot list the ground truth of {collection!r}: {exc}") from exc

    def sites(
        self, collection: str, landform: str, confine: Confine
    ) -> tuple[list[tuple[float, float]], int]:
        """(lon, lat) points of the landform's catalogue, and how many rows were unusable."""
        folder = self._geo_folder(collection, confine)
        path = ground_truth_path(folder, landform)
        if not is_plain_name(landform) or not path.is_file():
            raise LandformNotFound(
                f"the dataset of {collection!r} has no {GROUND_TRUTH_DIR}/{landform}.csv; "
                f"GET /v1/collections/{collection}/ground-truth lists its landforms"
            )
        skips = SkipLog()
        try:
            points = load_ground_truth(path, skips, roots=self._confinement)
        except OutsideRoots as exc:
            raise SitesUnavailable(str(exc)) from exc
        except DatasetError as exc:
            raise SitesUnavailable(f"cannot read the ground truth of {collection!r}: {exc}") from exc
        return [(lon, lat) for lon, lat in points.tolist()], skips.count
