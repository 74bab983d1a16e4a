"""Procedural CTX-like terrain: a height field and an albedo field, rendered as a grayscale image.

Landforms are drawn as changes to the height field (so that the sun gives them shading and
shadows, as in a real orbital image) and, where the landform is an albedo feature (slope
streaks), to the albedo field. All coordinates are normalised to the image width, so a drawing
looks the same at every pixel size.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

# MRO images Mars at about 3 pm local time, so the sun is in the west (image left); only its
# elevation varies.
_SUN_ELEVATION_DEG = (25.0, 50.0)


@dataclass(slots=True)
class Canvas:
    """A square patch of terrain under construction.

    `x` and `y` hold each pixel's centre in [0, 1] (y grows downwards, north is up); heights
    are in the same unit, so a slope of 1 is 45 degrees.
    """

    height: np.ndarray
    albedo: np.ndarray
    x: np.ndarray
    y: np.ndarray

    @property
    def size(self) -> int:
        return int(self.height.shape[0])


@dataclass(frozen=True, slots=True)
class TerrainStyle:
    """Background properties that captions may describe."""

    roughness: float  # amplitude of the fractal relief
    tone: float  # mean albedo
    spectral_slope: float  # larger is smoother, longer-wavelength relief


@functools.lru_cache(maxsize=8)
def _log_frequency(size: int) -> np.ndarray:
    """log |f| on the rfft2 grid of a size x size field; DC reads as |f| = 1 (callers zero it)."""
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    freq = np.sqrt(fx * fx + fy * fy)
    freq[0, 0] = 1.0
    return np.log(freq)


def fractal_noise(rng: np.random.Generator, size: int, beta: float) -> np.ndarray:
    """Zero-mean, unit-std 1/f^beta noise by spectral synthesis (cheap, and periodic)."""
    spectrum = np.fft.rfft2(rng.standard_normal((size, size)))
    spectrum *= np.exp(-0.5 * beta * _log_frequency(size))
    spectrum[0, 0] = 0.0
    field = np.fft.irfft2(spectrum, s=(size, size))
    return (field / (field.std() + 1e-12)).astype(np.float32)


def sample_style(rng: np.random.Generator) -> TerrainStyle:
    return TerrainStyle(
        roughness=float(rng.uniform(0.002, 0.012)),
        tone=float(rng.uniform(0.35, 0.7)),
        spectral_slope=float(rng.uniform(3.0, 3.8)),
    )


def new_canvas(rng: np.random.Generator, size: int, style: TerrainStyle) -> Canvas:
    """A background of rolling or rough plains with faint albedo mottling."""
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size
    x, y = np.meshgrid(coords, coords)
    relief = fractal_noise(rng, size, style.spectral_slope)
    # Regolith grain: fine noise whose amplitude scales with the pixel so slopes stay the same.
    height = style.roughness * relief + (0.04 / size) * fractal_noise(rng, size, 2.0)
    # Bright dust collects in the lows, so albedo mottling follows the relief.
    albedo = style.tone * (1.0 - 0.06 * relief)
    return Canvas(height=height, albedo=albedo, x=x, y=y)


def _cast_shadow(height: np.ndarray, tan_elev: float, step: float) -> np.ndarray:
    """1 where the sun (from the left) is blocked by higher ground to the west, else 0.

    The horizon seen from column c is max over c' <= c of h[c'] - (c - c') * drop, which is a
    running maximum of h + c * drop, shifted back.
    """
    ramp = np.arange(height.shape[1], dtype=np.float32) * np.float32(step * tan_elev)
    horizon = np.maximum.accumulate(height + ramp, axis=1) - ramp
    return (height < horizon - 1e-6).astype(np.float32)


def render(canvas: Canvas, rng: np.random.Generator) -> np.ndarray:
    """Hill-shade the height field under a western sun, add sensor noise, map to uint8."""
    size = canvas.size
    step = 1.0 / size
    elevation = np.deg2rad(rng.uniform(*_SUN_ELEVATION_DEG))
    gy, gx = np.gradient(canvas.height, step)
    light = np.array([-np.cos(elevation), 0.0, np.sin(elevation)], dtype=np.float32)
    shade = (-gx * light[0] - gy * light[1] + light[2]) / np.sqrt(1.0 + gx * gx + gy * gy)
    shade = np.clip(shade, 0.0, None)
    shadow = _cast_shadow(canvas.height, float(np.tan(elevation)), step)
    shade = shade * (1.0 - 0.55 * shadow)
    # Divide by the flat-ground shade so that flat terrain shows its albedo at any sun elevation.
    radiance = canvas.albedo * (0.25 + 0.95 * shade) / (0.25 + 0.95 * float(light[2]))
    radiance = radiance + rng.normal(0.0, 0.012, radiance.shape).astype(np.float32)
    # A fixed stretch with a little per-image gain: plains stay calm, relief stands out.
    stretched = 0.1 + 0.8 * radiance * rng.uniform(0.85, 1.15)
    return np.clip(stretched * 255.0 + 0.5, 0, 255).astype(np.uint8)
