"""Geo query construction against hand-worked arithmetic (PROTOCOL.md Task 3)."""

import numpy as np
import pytest

from marsbench.tasks.geo import geo_phrase, geo_prompts, hybrid_query, image_query, softmax, text_query


def unit(*xs: float) -> np.ndarray:
    v = np.array(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_phrase_keeps_hyphens_like_the_reference_geo_queries() -> None:
    assert geo_phrase("glacier-like_form") == "glacier-like form"
    assert geo_prompts("pitted_cones")[1] == "a satellite photo of pitted cones."


def test_text_query_is_the_normalised_mean() -> None:
    prompts = np.stack([unit(1, 0), unit(0, 1), unit(1, 0)])
    # mean = (2/3, 1/3) -> normalised (2, 1)/sqrt(5)
    np.testing.assert_allclose(text_query(prompts), unit(2, 1), atol=1e-7)


def test_image_query_is_the_normalised_mean() -> None:
    np.testing.assert_allclose(image_query(np.stack([unit(1, 0), unit(0, 1)])), unit(1, 1), atol=1e-7)
    with pytest.raises(ValueError):
        image_query(np.zeros((0, 2)))


def test_hybrid_query_hand_worked() -> None:
    t = unit(1, 0)
    x = np.stack([unit(1, 0), unit(0, 1)])
    # similarities to t: 1 and 0; softmax(s / 0.1) = e^10 / (e^10 + 1), 1 / (e^10 + 1)
    w0 = np.exp(10) / (np.exp(10) + 1)
    w1 = 1 / (np.exp(10) + 1)
    v = unit(w0, w1)
    # query = normalise(0.3 v + 0.7 t)
    expected = 0.3 * v + 0.7 * t
    expected /= np.linalg.norm(expected)
    np.testing.assert_allclose(hybrid_query(t, x), expected, atol=1e-6)
    np.testing.assert_allclose(softmax(np.array([10.0, 0.0])), [w0, w1], rtol=1e-12)


def test_hybrid_mix_ratio_and_temperature_are_honoured() -> None:
    t = unit(1, 0)
    x = np.stack([unit(1, 0), unit(0, 1)])
    np.testing.assert_allclose(hybrid_query(t, x, mix_ratio=0.0), t, atol=1e-7)
    # A very high temperature weights the images equally: v = unit(1, 1).
    expected = 0.5 * unit(1, 1) + 0.5 * t
    np.testing.assert_allclose(
        hybrid_query(t, x, mix_ratio=0.5, temperature=1e9), expected / np.linalg.norm(expected), atol=1e-6
    )
