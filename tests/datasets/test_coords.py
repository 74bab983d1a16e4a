"""Tile names <-> minimum-corner coordinates."""

from __future__ import annotations

import math

import pytest

from marsbench.datasets.coords import TileNameError, parse_tile_name, tile_name


@pytest.mark.parametrize(
    ("name", "lon", "lat"),
    [
        ("E12_4_N_3_2.png", 12.4, -3.2),
        ("E_12_4_N3_2.png", -12.4, 3.2),
        ("E_12_4_N_3_2.png", -12.4, -3.2),
        ("E12_4_N3_2.png", 12.4, 3.2),
        ("E0_0_N0_0.png", 0.0, 0.0),
        ("E_0_2_N_0_4.png", -0.2, -0.4),
        ("E179_8_N_80_0.png", 179.8, -80.0),
        ("E_180_0_N79_8.png", -180.0, 79.8),
        ("E012_40_N3_25.png", 12.4, 3.25),  # leading zeros and more decimals still parse
    ],
)
def test_parse_tile_name(name: str, lon: float, lat: float) -> None:
    assert parse_tile_name(name) == (lon, lat)


def test_parsed_values_are_exactly_the_floats_the_reference_computes() -> None:
    # The reference does sign * float("12.4"): the same bits as the literal, negation exact.
    lon, lat = parse_tile_name("E_12_4_N0_3.png")
    assert lon == -1 * float("12.4") and lat == float("0.3")
    assert (lon, lat) == (-12.4, 0.3)


def test_a_leading_underscore_on_zero_gives_negative_zero_like_the_reference() -> None:
    lon, lat = parse_tile_name("E_0_0_N0_0.png")
    assert lon == 0.0 and math.copysign(1.0, lon) == -1.0
    assert math.copysign(1.0, lat) == 1.0


@pytest.mark.parametrize(
    "name",
    [
        "E12_4_N3_2.PNG",  # the extension is matched exactly, as in the reference
        "E12_4_N3_2.jpg",
        "E12_4_N3_2",
        "E12_4_N3_2.png.bak",
        "e12_4_N3_2.png",
        "E12.4_N3.2.png",  # a real decimal point
        "E-12_4_N3_2.png",  # a real minus sign
        "E12_N3_2.png",  # no fractional part
        "E12_4_N3.png",
        "E__12_4_N3_2.png",
        "E12_4_3_N3_2.png",
        "N3_2_E12_4.png",
        "E12_4_N3_2 .png",
        "dir/E12_4_N3_2.png",  # a path, not a name
        "E１２_4_N3_2.png",  # non-ASCII digits
        "",
    ],
)
def test_malformed_names_raise_tile_name_error(name: str) -> None:
    with pytest.raises(TileNameError, match="does not match") as info:
        parse_tile_name(name)
    assert isinstance(info.value, ValueError)
    assert repr(name) in str(info.value)


@pytest.mark.parametrize(
    ("lon", "lat", "name"),
    [
        (12.4, -3.2, "E12_4_N_3_2.png"),
        (-12.4, 3.2, "E_12_4_N3_2.png"),
        (0.0, 0.0, "E0_0_N0_0.png"),
        (-0.2, 79.8, "E_0_2_N79_8.png"),
        # Corners as the builder computes them (start + col * delta) carry float noise.
        (-4 + 19 * 0.2, -8 + 15 * 0.2, "E_0_2_N_5_0.png"),
        (-0.0, 0.0, "E_0_0_N0_0.png"),  # the builder's formatting writes -0.0 with a minus
        (-0.04, 0.04, "E_0_0_N0_0.png"),
    ],
)
def test_tile_name(lon: float, lat: float, name: str) -> None:
    assert tile_name(lon, lat) == name


def test_round_trip_over_a_grid_of_corners() -> None:
    for lon_tenths in range(-1800, 1800, 7):
        for lat_tenths in range(-800, 801, 13):
            lon, lat = lon_tenths / 10, lat_tenths / 10
            name = tile_name(lon, lat)
            assert parse_tile_name(name) == (lon, lat)
            assert tile_name(*parse_tile_name(name)) == name


@pytest.mark.parametrize("name", ["E12_4_N_3_2.png", "E_12_4_N3_2.png", "E_0_0_N0_0.png", "E0_0_N_0_0.png"])
def test_round_trip_from_names(name: str) -> None:
    assert tile_name(*parse_tile_name(name)) == name


def test_tile_name_with_more_decimals() -> None:
    assert tile_name(12.45, -3.05, decimals=2) == "E12_45_N_3_05.png"
    assert parse_tile_name(tile_name(12.45, -3.05, decimals=2)) == (12.45, -3.05)


@pytest.mark.parametrize(("lon", "lat", "decimals"), [(1.0, 2.0, 0), (math.nan, 0.0, 1), (0.0, math.inf, 1)])
def test_tile_name_rejects_what_cannot_be_named(lon: float, lat: float, decimals: int) -> None:
    with pytest.raises(ValueError):
        tile_name(lon, lat, decimals)
