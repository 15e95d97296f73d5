import numpy as np
import pytest
import torch

from modnets.data import SHAPES3D_FACTORS, Shapes3DConfig, collate_shapes3d, make_shapes3d, render_shapes3d
from modnets.errors import ConfigError, ShapeError

BASE = [2, 5, 8, 3, 0, 7]  # floor, wall, object hue, scale, shape, orientation


def _render(**changes):
    factors = list(BASE)
    for name, value in changes.items():
        factors[list(SHAPES3D_FACTORS).index(name)] = value
    return render_shapes3d(np.array([factors]), 16)[0]


def _changed(a, b):
    return np.abs(a - b).sum(0) > 1e-3  # (H, W) pixels that differ


def test_every_factor_changes_the_image_where_it_should():
    base = _render()
    assert base.shape == (3, 16, 16) and base.dtype == np.float32 and 0 <= base.min() and base.max() <= 1
    floor, wall = _changed(base, _render(floor_hue=6)), _changed(base, _render(wall_hue=1))
    obj = _changed(base, _render(object_hue=3))
    # the hues recolour regions that meet only at anti-aliased edges: the floor below, the wall above,
    # the object in between
    assert floor.any() and wall.any() and obj.any()
    for a, b in ((floor, wall), (floor, obj), (wall, obj)):
        assert (a & b).sum() < 0.3 * min(a.sum(), b.sum())
    assert np.argwhere(wall)[:, 0].mean() < np.argwhere(obj)[:, 0].mean() < np.argwhere(floor)[:, 0].mean()
    # a bigger scale covers more pixels with the object's colour
    assert _changed(_render(scale=7), _render(scale=7, object_hue=3)).sum() > obj.sum()
    for name, value in (("shape", 2), ("orientation", 0)):
        assert _changed(base, _render(**{name: value})).any(), name


def test_the_four_shapes_are_distinct_images():
    images = [_render(shape=s) for s in range(4)]
    for i in range(4):
        for j in range(i + 1, 4):
            assert np.abs(images[i] - images[j]).mean() > 1e-3


def test_dataset_is_seeded_and_keeps_the_labels():
    a = make_shapes3d(Shapes3DConfig(n_examples=20, image_size=16, seed=3))
    b = make_shapes3d(Shapes3DConfig(n_examples=20, image_size=16, seed=3))
    assert torch.equal(a.images, b.images) and torch.equal(a.factors, b.factors)
    assert torch.allclose(a.images[4], torch.from_numpy(render_shapes3d(a.factors[4:5].numpy(), 16)[0]))
    batch = collate_shapes3d([a[i] for i in range(5)])
    assert batch["x"].shape == (5, 3, 16, 16) and torch.equal(batch["shape"], a.shapes[:5])


def test_bad_inputs_are_refused_with_a_clear_message():
    with pytest.raises(ShapeError, match=r"factors must be \(N, 6\)"):
        render_shapes3d(np.zeros((2, 5), int))
    with pytest.raises(ConfigError, match="'shape' takes values 0..3"):
        render_shapes3d(np.array([[0, 0, 0, 0, 4, 0]]))
    with pytest.raises(ConfigError, match="n_examples must be an int >= 1, got 0"):
        Shapes3DConfig(n_examples=0)


def _object_share(zoom):
    """The share of the pixels that the object's hue recolours, at a camera zoom."""
    other_hue = [*BASE[:2], 1, *BASE[3:]]
    images = render_shapes3d(np.array([BASE, other_hue]), 32, zoom=zoom)
    return _changed(images[0], images[1]).mean()


def test_zoom_magnifies_the_object_and_bad_zooms_are_refused():
    # the object's area grows with the square of the magnification
    assert 1.8 * _object_share(1.0) < _object_share(1.5) < 2.6 * _object_share(1.0)
    data = make_shapes3d(Shapes3DConfig(n_examples=4, image_size=16, zoom=1.5))
    rendered = render_shapes3d(data.factors[:1].numpy(), 16, zoom=1.5)[0]
    assert torch.allclose(data.images[0], torch.from_numpy(rendered))
    for bad in (0.1, 10, "2"):
        with pytest.raises(ConfigError, match="zoom must be a number in"):
            Shapes3DConfig(zoom=bad)
