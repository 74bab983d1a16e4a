"""Synthetic Mars datasets in the benchmark's published layouts, for tests, demos and training.

`synthesize(out, scale=..., seed=...)` writes, under `out`:

- `landform/dataset/data/train-0000N-of-0000M.parquet`: Hugging Face parquet shards (Task 2);
- `landform_folders/dataset/<class>/<image_id>.png`: the same images, one folder per class;
- `paired/dataset/000000.tar ...` and `mars_vl_pairs.tsv`: image-caption pairs (Task 1);
- `geo/dataset/{tiles/.../thumb/<mosaic>/*.tar, ground_truth/*.csv, image_queries/*/}` (Task 3).

Images are procedurally drawn grayscale terrain with landforms (numpy and Pillow only); the
same seed gives byte-identical files.
"""

from ._api import DEFAULT_IMAGE_SIZE, MANIFEST_NAME, TASKS, synthesize
from ._geo import GEO_LANDFORMS, THUMB_SUBDIR, tile_name
from ._landforms import LANDFORM_CLASSES
from ._paired import TSV_NAME
from ._relief import relief_png_tiles
from ._scales import SCALES, Scale
from ._summary import GeoSummary, LandformSummary, PairedSummary, SynthSummary

__all__ = [
    "DEFAULT_IMAGE_SIZE",
    "GEO_LANDFORMS",
    "LANDFORM_CLASSES",
    "MANIFEST_NAME",
    "SCALES",
    "TASKS",
    "THUMB_SUBDIR",
    "TSV_NAME",
    "GeoSummary",
    "LandformSummary",
    "PairedSummary",
    "Scale",
    "SynthSummary",
    "relief_png_tiles",
    "synthesize",
    "tile_name",
]
