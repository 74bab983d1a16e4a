"""The benchmark's geo-localization tiles cut from the CTX mosaic's GeoTIFFs (Task 3 of the protocol).

`grid` names the 0.2-degree cells of a mosaic tile (pure functions), `warp` renders one cell as the
reference's cut.py + thumb_gen.py do (bilinear gdalwarp from the mosaic's projection, then the
PIL bicubic thumbnail), and `shards` plans and writes the WebDataset shards, resumably and over a
process pool. See docs/data-tiles.md.
"""
