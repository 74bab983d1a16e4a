r"""Parity of `marsbench data build-tiles` with the reference's build_tiles.py, pixel by pixel.

    python benchmarks/parity/tiles_parity.py prepare --out /tmp/tilesparity
    marsbench data build-tiles --mosaic /tmp/tilesparity/mosaic --out /tmp/tilesparity/ours
    (cd REF/data_processing/geolocalization && /usr/bin/python3 build_tiles.py \
        --raw-dir /tmp/tilesparity/mosaic --dataset-dir /tmp/tilesparity/ref)
    python benchmarks/parity/tiles_parity.py compare --ours /tmp/tilesparity/ours \
        --reference /tmp/tilesparity/ref

The reference runs unmodified with GDAL (Debian's python3-gdal, gdal-bin, python3-pyproj,
python3-numpy, python3-pil, python3-tqdm and python3-torch: cut.py imports torch to seed it).

`prepare` writes synthetic mosaic files in the CTX mosaic's projection (equirectangular on the
3396190 m sphere, `marsbench.datasets.tiles.synthetic`): a 2 x 2 degree grey patch inside the
4 x 4 degree extent of E-004_N-08 (the other cells lie outside the raster, and the patch edges
fall mid-cell), a full 3-band extent at E008_N04 with a source nodata value, and one file at N-84
that both sides leave out (beyond 80 degrees).

`compare` reads every shard of both dataset folders (`tiles/image_size_512_delta_0.2/thumb/
<source>/*.tar`) and compares the tile names per source, then each tile's decoded RGB pixels. It
prints the tile counts, the largest absolute difference and the number of differing pixels, and
exits 1 unless the names match and no pixel differs.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from marsbench.datasets.tiles.grid import variant_name
from marsbench.datasets.tiles.synthetic import write_source


def prepare(out: Path) -> dict[str, object]:
    mosaic = out / "mosaic"
    files = [
        write_source(mosaic, -4, -8, patch=(-3.5, -7.5, -1.5, -5.5), px_per_deg=500, seed=1),
        write_source(mosaic / "sub", 8, 4, px_per_deg=150, seed=2, bands=3, nodata=0),
        write_source(mosaic, 20, -84, px_per_deg=10, seed=3),
    ]
    return {"mosaic": str(mosaic), "files": [str(f) for f in files]}


def _tiles(dataset: Path) -> dict[str, dict[str, np.ndarray]]:
    thumb = dataset / "tiles" / variant_name() / "thumb"
    found: dict[str, dict[str, np.ndarray]] = {}
    for shard in sorted(thumb.glob("*/*.tar")):
        tiles = found.setdefault(shard.parent.name, {})
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                data = tar.extractfile(member)
                if data is not None and member.name.endswith(".png"):
                    tiles[member.name] = np.asarray(Image.open(io.BytesIO(data.read())).convert("RGB"))
    return found


def compare(ours: Path, reference: Path) -> int:
    mine, theirs = _tiles(ours), _tiles(reference)
    report: dict[str, object] = {"sources": {}, "max_abs_diff": 0, "differing_pixels": 0, "pixels": 0}
    ok = sorted(mine) == sorted(theirs)
    for source in sorted(set(mine) | set(theirs)):
        a, b = mine.get(source, {}), theirs.get(source, {})
        names_equal = sorted(a) == sorted(b)
        ok &= names_equal
        max_diff = differing = pixels = 0
        for name in sorted(set(a) & set(b)):
            x, y = a[name].astype(np.int16), b[name].astype(np.int16)
            if x.shape != y.shape:
                ok = False
                print(f"{source}/{name}: shape {x.shape} against {y.shape}")
                continue
            diff = np.abs(x - y)
            max_diff = max(max_diff, int(diff.max()))
            differing += int(diff.any(axis=2).sum())
            pixels += x.shape[0] * x.shape[1]
        report["sources"][source] = {  # type: ignore[index]
            "ours": len(a),
            "reference": len(b),
            "names_equal": names_equal,
            "max_abs_diff": max_diff,
            "differing_pixels": differing,
            "pixels": pixels,
        }
        report["max_abs_diff"] = max(int(report["max_abs_diff"]), max_diff)  # type: ignore[call-overload]
        report["differing_pixels"] = int(report["differing_pixels"]) + differing  # type: ignore[call-overload]
        report["pixels"] = int(report["pixels"]) + pixels  # type: ignore[call-overload]
    ok &= report["differing_pixels"] == 0 and bool(mine)
    report["equal"] = ok
    print(json.dumps(report, indent=2))
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    prep = commands.add_parser("prepare", help="Write the synthetic mosaic folder.")
    prep.add_argument("--out", required=True, type=Path)
    comp = commands.add_parser("compare", help="Compare marsbench's tiles with the reference's.")
    comp.add_argument("--ours", required=True, type=Path, help="marsbench's --out (a dataset/ folder)")
    comp.add_argument("--reference", required=True, type=Path, help="build_tiles.py's --dataset-dir")
    args = parser.parse_args(argv)
    if args.command == "prepare":
        print(json.dumps(prepare(args.out), indent=2))
        return 0
    return compare(args.ours, args.reference)


if __name__ == "__main__":
    sys.exit(main())
