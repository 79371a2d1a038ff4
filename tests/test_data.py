"""Bundled data and image loading: shapes, scales, and errors."""

import numpy as np
import pytest

from refimpl import data


@pytest.mark.parametrize("name", data.TEXTURES)
def test_bundled_textures(name):
    image = data.load_texture(name)
    assert image.shape == (1, 512, 512) and image.dtype == np.float64
    assert 0 <= image.min() and image.max() <= 255 and image.std() > 10


def test_downsample_then_crop():
    image = data.load_texture("brick", size=64, factor=4)
    assert image.shape == (1, 64, 64)
    full = data.load_texture("brick")
    # the centre 64x64 of the 128x128 block-averaged image starts at block (32, 32)
    expected = full[0, 128:132, 128:132].mean()
    assert image[0, 0, 0] == pytest.approx(expected, rel=1e-12)


def test_downsample_by_hand():
    x = np.arange(16.0).reshape(1, 4, 4)
    assert np.array_equal(data.downsample(x, 2)[0], [[2.5, 4.5], [10.5, 12.5]])
    with pytest.raises(ValueError, match="cannot be downsampled by 3"):
        data.downsample(x, 3)


def test_digits():
    images, labels = data.load_digits()
    assert images.shape == (1797, 1, 8, 8) and labels.shape == (1797,)
    assert images.min() == 0 and images.max() == 16
    threes, labels3 = data.load_digits(3)
    assert len(threes) == np.sum(labels == 3) and set(labels3) == {3}
    with pytest.raises(ValueError, match="digit must be 0..9"):
        data.load_digits(12)


def test_centre_removes_the_channel_mean():
    images = np.random.default_rng(0).uniform(0, 255, (3, 2, 5, 5))
    centred, mean = data.centre(images)
    assert mean.shape == (1, 2, 1, 1)
    assert np.allclose(centred.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    assert np.allclose(centred + mean, images)


def test_colour_and_gray_files(tmp_path):
    import matplotlib.pyplot as plt

    rgb = np.random.default_rng(0).uniform(0, 1, (6, 7, 3))
    plt.imsave(tmp_path / "colour.png", rgb)
    loaded = data.load_image(tmp_path / "colour.png")
    assert loaded.shape == (3, 6, 7)
    assert np.allclose(loaded / 255, rgb.transpose(2, 0, 1), atol=1 / 255)
    gray = np.repeat(rgb[:, :, :1], 3, axis=2)
    plt.imsave(tmp_path / "gray.png", gray)
    assert data.load_image(tmp_path / "gray.png").shape == (1, 6, 7)


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="image file not found"):
        data.load_image(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="unknown texture 'wood'"):
        data.texture_path("wood")
    with pytest.raises(ValueError, match="is 512x512: smaller than the requested size 600x600"):
        data.load_texture("brick", size=600)
    with pytest.raises(ValueError, match="cannot crop 600x600 from an image of 512x512"):
        data.centre_crop(data.load_texture("brick"), 600)


def test_an_unknown_name_lists_the_bundled_textures():
    with pytest.raises(FileNotFoundError, match="bricks .*bundled textures: brick, grass, gravel"):
        data.load_texture("bricks")


@pytest.mark.parametrize(
    "shape, size, factor",
    [((1, 512, 512), 64, 4), ((1, 512, 512), 32, 8), ((3, 64, 64), 64, 1), ((1, 300, 900), 64, 2)],
)
def test_default_factor_keeps_twice_the_size(shape, size, factor):
    assert data.default_factor(shape, size) == factor
    side = min(shape[1:]) // factor
    assert side >= 2 * size or factor == 1  # the rule
    assert min(shape[1:]) // (factor + 1) < 2 * size  # and the largest such factor


def test_too_small_after_downsampling_names_the_factor(tmp_path):
    import matplotlib.pyplot as plt

    plt.imsave(tmp_path / "small.png", np.random.default_rng(0).uniform(size=(64, 64)), cmap="gray")
    with pytest.raises(
        ValueError,
        match=r"is 64x64, 8x8 after block-averaging by factor 8: smaller than the requested size "
        r"32x32; lower the factor \(at most 2 fits\) or the size",
    ):
        data.load_texture(str(tmp_path / "small.png"), size=32, factor=8)
    with pytest.raises(ValueError, match="lower the size to at most 64"):
        data.load_texture(str(tmp_path / "small.png"), size=65)
    with pytest.raises(ValueError, match="factor must be an integer >= 1; got 0"):
        data.load_texture("brick", size=32, factor=0)
