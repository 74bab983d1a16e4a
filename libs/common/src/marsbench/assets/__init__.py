"""Files the shared library ships: the synthetic Mars relief used as a map background."""

from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent
BASEMAP = ASSETS_DIR / "basemap" / "mars-relief.jpg"
