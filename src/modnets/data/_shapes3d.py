"""Generated 3D-shapes-like images: an object on a floor in front of a wall, with the six factors of
DeepMind's 3dshapes (floor hue, wall hue, object hue, scale, shape, orientation).

The renderer is a small vectorised ray caster in numpy. The geometry of an image (which pixel sees the
floor, the wall or the object, and how brightly it is lit) depends only on (shape, scale, orientation):
480 combinations, each ray-cast once per image size (and cached) at 2x2 supersampling, shadows included.
Each image is then the three hue colours mixed by its geometry's weight maps, so tens of thousands of
images take seconds.
"""

from __future__ import annotations

import colorsys
import functools
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from .._checks import check_ints
from .._config import Config
from ..errors import ConfigError, ShapeError

__all__ = [
    "SHAPES3D_FACTORS",
    "SHAPES3D_SHAPES",
    "Shapes3DConfig",
    "Shapes3DDataset",
    "collate_shapes3d",
    "make_shapes3d",
    "render_shapes3d",
]

#: factor name -> number of values, in the column order of the factor labels (as in 3dshapes)
SHAPES3D_FACTORS: dict[str, int] = {
    "floor_hue": 10, "wall_hue": 10, "object_hue": 10, "scale": 8, "shape": 4, "orientation": 15,
}
#: the values of the ``shape`` factor
SHAPES3D_SHAPES: tuple[str, ...] = ("cube", "cylinder", "sphere", "capsule")

_CAMERA = np.array([0.0, 1.8, -4.6])
_TARGET = np.array([0.0, 0.75, 0.0])
_WALL_Z = 2.5
_LIGHT = np.array([-0.5, 0.8, -0.45]) / np.linalg.norm([-0.5, 0.8, -0.45])
_AMBIENT = 0.3
_FOV = 0.42  # half-width of the image plane at unit distance


@dataclass
class Shapes3DConfig(Config):
    """Settings of :func:`make_shapes3d`.

    Attributes:
        n_examples: images to generate, each with factors drawn uniformly at random.
        image_size: height and width in pixels (>= 8).
        seed: seeds the factor draws.
        factor_values: the labels some factors are restricted to, drawn uniformly among them (e.g.
            ``{"shape": (0, 2), "floor_hue": (0,)}``: cubes and spheres on one floor colour); the other factors
            take all their values. A reduced problem for short runs.
        zoom: the camera's magnification (1: the object covers about 15 % of the pixels on average, 6-34 %
            by scale and shape; 1.5: about a third).
    """

    n_examples: int = 10000
    image_size: int = 64
    seed: int = 0
    factor_values: dict[str, tuple[int, ...]] | None = None
    zoom: float = 1.0

    def __post_init__(self) -> None:
        check_ints(self, "n_examples")
        check_ints(self, "image_size", minimum=8)
        if not isinstance(self.seed, int):
            raise ConfigError(f"Shapes3DConfig.seed must be an int, got {self.seed!r}")
        if not (isinstance(self.zoom, (int, float)) and 0.5 <= self.zoom <= 4):
            raise ConfigError(f"Shapes3DConfig.zoom must be a number in [0.5, 4], got {self.zoom!r}")
        for name, values in (self.factor_values or {}).items():
            if name not in SHAPES3D_FACTORS:
                raise ConfigError(f"Shapes3DConfig.factor_values: unknown factor {name!r}; factors: "
                                  f"{', '.join(SHAPES3D_FACTORS)}")
            n = SHAPES3D_FACTORS[name]
            if not values or any(not isinstance(v, int) or not 0 <= v < n for v in values):
                raise ConfigError(f"Shapes3DConfig.factor_values[{name!r}] must be a non-empty tuple of labels in "
                                  f"0..{n - 1}, got {values!r}")


class Shapes3DDataset(Dataset):
    """Images with their factor labels.

    Attributes:
        images: ``(N, 3, H, W)`` float32 in [0, 1].
        factors: ``(N, 6)`` long, columns in the order of :data:`SHAPES3D_FACTORS`.
    """

    def __init__(self, images: Tensor, factors: Tensor):
        if images.dim() != 4 or images.shape[1] != 3 or factors.shape != (images.shape[0], len(SHAPES3D_FACTORS)):
            raise ShapeError(f"expected images (N, 3, H, W) and factors (N, 6), got {tuple(images.shape)} and "
                             f"{tuple(factors.shape)}")
        self.images, self.factors = images, factors

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {"x": self.images[i], "factors": self.factors[i], "index": torch.tensor(i)}

    @property
    def shapes(self) -> Tensor:
        """``(N,)`` the shape label of each image (index into :data:`SHAPES3D_SHAPES`)."""
        return self.factors[:, list(SHAPES3D_FACTORS).index("shape")]


def collate_shapes3d(examples: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Stack examples into a batch: ``x`` (B, 3, H, W), ``factors`` (B, 6), ``shape`` (B,), ``index`` (B,)."""
    factors = torch.stack([e["factors"] for e in examples])
    return {"x": torch.stack([e["x"] for e in examples]), "factors": factors,
            "shape": factors[:, list(SHAPES3D_FACTORS).index("shape")],
            "index": torch.stack([e["index"] for e in examples])}


def make_shapes3d(config: Shapes3DConfig) -> Shapes3DDataset:
    """``config.n_examples`` images with factors drawn uniformly at random (seeded), each among all its values or
    among ``config.factor_values``."""
    rng = np.random.default_rng(config.seed)
    allowed = config.factor_values or {}
    columns = []
    for name, n in SHAPES3D_FACTORS.items():
        values = np.asarray(allowed.get(name, range(n)))
        columns.append(values[rng.integers(0, len(values), config.n_examples)])
    factors = np.stack(columns, axis=1)
    images = render_shapes3d(factors, config.image_size, zoom=config.zoom)
    return Shapes3DDataset(torch.from_numpy(images), torch.from_numpy(factors).long())


def render_shapes3d(factors: np.ndarray, image_size: int = 64, *, zoom: float = 1.0) -> np.ndarray:
    """Render images from their factor labels.

    Args:
        factors: ``(N, 6)`` integer labels, columns in the order of :data:`SHAPES3D_FACTORS`.
        image_size: height and width in pixels.
        zoom: the camera's magnification (the image plane's half-width is divided by it).

    Returns:
        ``(N, 3, image_size, image_size)`` float32 RGB in [0, 1].

    Raises:
        ShapeError: ``factors`` is not ``(N, 6)``.
        ConfigError: a label outside its factor's range.
    """
    factors = np.asarray(factors)
    if factors.ndim != 2 or factors.shape[1] != len(SHAPES3D_FACTORS):
        raise ShapeError(f"factors must be (N, {len(SHAPES3D_FACTORS)}), got {factors.shape}")
    for col, (name, n) in enumerate(SHAPES3D_FACTORS.items()):
        if factors.shape[0] and (factors[:, col].min() < 0 or factors[:, col].max() >= n):
            raise ConfigError(f"factor {name!r} takes values 0..{n - 1}, got {factors[:, col].min()}.."
                              f"{factors[:, col].max()}")
    hues = _hue_colors()  # (10, 3)
    floor, wall, obj = factors[:, 0], factors[:, 1], factors[:, 2]
    combos, which = np.unique(factors[:, 3:6], axis=0, return_inverse=True)  # (scale, shape, orientation)
    geometry = np.stack([_geometry(image_size, *map(int, c), float(zoom)) for c in combos])  # (G, 3 surfaces, H, W)
    colors = np.stack([hues[floor], hues[wall], hues[obj]], axis=1)  # (N, 3 surfaces, 3 rgb)
    out = np.empty((factors.shape[0], 3, image_size, image_size), np.float32)
    for start in range(0, factors.shape[0], 1024):
        s = slice(start, start + 1024)
        out[s] = np.einsum("nshw,nsc->nchw", geometry[which.reshape(-1)[s]], colors[s], optimize=True)
    return out


def _hue_colors() -> np.ndarray:
    """``(10, 3)`` fully saturated colours of the 10 hues (0, 0.1, ..., 0.9)."""
    return np.array([colorsys.hsv_to_rgb(h / 10, 0.85, 1.0) for h in range(10)], np.float32)


@functools.lru_cache(maxsize=4096)
def _geometry(image_size: int, scale: int, shape: int, orientation: int, zoom: float = 1.0) -> np.ndarray:
    """``(3, H, W)`` lit coverage of floor, wall and object for one (scale, shape, orientation), 2x2 supersampled."""
    angle = np.linspace(-np.pi / 6, np.pi / 6, SHAPES3D_FACTORS["orientation"])[orientation]
    size = np.linspace(0.75, 1.25, SHAPES3D_FACTORS["scale"])[scale]
    origin, dirs = _rays(image_size * 2, angle, zoom)
    lit = _trace(origin, dirs, SHAPES3D_SHAPES[shape], 0.7 * size)  # (3, 2H, 2W)
    return lit.reshape(3, image_size, 2, image_size, 2).mean(axis=(2, 4))


def _rays(size: int, angle: float, zoom: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """The camera orbiting the object by ``angle`` about the vertical axis: origin (3,), directions (P, 3)."""
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    origin = rot @ _CAMERA
    forward = rot @ (_TARGET - _CAMERA)
    forward /= np.linalg.norm(forward)
    right = np.cross(np.array([0.0, 1.0, 0.0]), forward)
    right /= np.linalg.norm(right)
    up = np.cross(forward, right)
    u = (np.arange(size) + 0.5) / size * 2 - 1
    px, py = np.meshgrid(u, -u)  # rows go down
    dirs = forward + _FOV / zoom * (px[..., None] * right + py[..., None] * up)
    dirs = dirs.reshape(-1, 3)
    return origin, dirs / np.linalg.norm(dirs, axis=1, keepdims=True)


def _trace(origin: np.ndarray, dirs: np.ndarray, shape: str, r: float) -> np.ndarray:
    """``(3, S, S)`` lit coverage of floor, wall and object for primary rays ``dirs`` (P, 3) from ``origin``."""
    p = dirs.shape[0]
    size = int(round(np.sqrt(p)))
    o = np.broadcast_to(origin, dirs.shape)
    t_obj, n_obj = _hit_object(o, dirs, shape, r)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_floor = np.where(dirs[:, 1] < 0, -o[:, 1] / dirs[:, 1], np.inf)
        t_wall = np.where(dirs[:, 2] > 0, (_WALL_Z - o[:, 2]) / dirs[:, 2], np.inf)
    t_floor = np.where(o[:, 2] + t_floor * dirs[:, 2] <= _WALL_Z, t_floor, np.inf)  # the floor ends at the wall
    t_all = np.stack([t_floor, t_wall, t_obj])  # (3, P)
    nearest = t_all.argmin(0)
    t = t_all.min(0)
    normals = np.stack([np.broadcast_to([0.0, 1.0, 0.0], (p, 3)), np.broadcast_to([0.0, 0.0, -1.0], (p, 3)), n_obj])
    normal = normals[nearest, np.arange(p)]
    point = o + t[:, None] * dirs
    light = np.broadcast_to(_LIGHT, (p, 3))
    shadow_t, _ = _hit_object(point + 1e-4 * normal, light, shape, r)
    shadowed = np.isfinite(shadow_t) & (nearest != 2)
    diffuse = np.clip(normal @ _LIGHT, 0.0, None) * ~shadowed
    brightness = _AMBIENT + (1 - _AMBIENT) * diffuse
    out = np.zeros((3, p), np.float32)
    out[nearest, np.arange(p)] = brightness
    return out.reshape(3, size, size)


def _hit_object(o: np.ndarray, d: np.ndarray, shape: str, r: float) -> tuple[np.ndarray, np.ndarray]:
    """Nearest positive hit ``t`` (P,) (``inf`` for a miss) and the unit normal there (P, 3)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if shape == "sphere":
            return _hit_sphere(o, d, np.array([0.0, r, 0.0]), r)
        if shape == "cube":
            return _hit_box(o, d, np.array([-r, 0.0, -r]), np.array([r, 2 * r, r]))
        if shape == "cylinder":
            return _hit_cylinder(o, d, 0.9 * r, 2 * r)
        return _hit_capsule(o, d, 0.62 * r, 1.1 * r)


def _first(*candidates: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    ts = np.stack([np.where(np.isfinite(t) & (t > 1e-6), t, np.inf) for t, _ in candidates])
    best = ts.argmin(0)
    normals = np.stack([n for _, n in candidates])
    return ts.min(0), normals[best, np.arange(ts.shape[1])]


def _hit_sphere(o, d, center, radius):
    oc = o - center
    b = (oc * d).sum(1)
    h = b * b - ((oc * oc).sum(1) - radius * radius)
    t = np.where(h >= 0, -b - np.sqrt(np.maximum(h, 0)), np.inf)
    n = (o + t[:, None] * d - center) / radius
    return _first((t, np.nan_to_num(n)))


def _hit_box(o, d, lo, hi):
    t1, t2 = (lo - o) / d, (hi - o) / d
    near, far = np.minimum(t1, t2), np.maximum(t1, t2)
    t_in, t_out = near.max(1), far.min(1)
    t = np.where((t_in <= t_out) & (t_out > 0), t_in, np.inf)
    axis = near.argmax(1)
    n = np.zeros_like(o)
    n[np.arange(o.shape[0]), axis] = -np.sign(d[np.arange(o.shape[0]), axis])
    return _first((t, n))


def _hit_cylinder(o, d, radius, height):
    a = d[:, 0] ** 2 + d[:, 2] ** 2
    b = o[:, 0] * d[:, 0] + o[:, 2] * d[:, 2]
    c = o[:, 0] ** 2 + o[:, 2] ** 2 - radius**2
    h = b * b - a * c
    t_side = np.where(h >= 0, (-b - np.sqrt(np.maximum(h, 0))) / a, np.inf)
    y = o[:, 1] + t_side * d[:, 1]
    t_side = np.where((y >= 0) & (y <= height), t_side, np.inf)
    p = o + t_side[:, None] * d
    n_side = np.nan_to_num(np.stack([p[:, 0], np.zeros_like(y), p[:, 2]], 1) / radius)
    t_top = (height - o[:, 1]) / d[:, 1]
    q = o + t_top[:, None] * d
    t_top = np.where(q[:, 0] ** 2 + q[:, 2] ** 2 <= radius**2, t_top, np.inf)
    n_top = np.broadcast_to([0.0, 1.0, 0.0], o.shape)
    return _first((t_side, n_side), (t_top, n_top))


def _hit_capsule(o, d, radius, half_length):
    """A capsule lying on the floor along the x axis: a segment of half-length ``half_length``, swept by a ball."""
    a_end, b_end = np.array([-half_length, radius, 0.0]), np.array([half_length, radius, 0.0])
    axis = np.array([1.0, 0.0, 0.0])
    # the body: the infinite cylinder about the axis, cut to the segment
    oa = o - a_end
    d_perp = d - (d @ axis)[:, None] * axis
    oa_perp = oa - (oa @ axis)[:, None] * axis
    qa, qb = (d_perp * d_perp).sum(1), (d_perp * oa_perp).sum(1)
    h = qb * qb - qa * ((oa_perp * oa_perp).sum(1) - radius**2)
    t_body = np.where(h >= 0, (-qb - np.sqrt(np.maximum(h, 0))) / qa, np.inf)
    along = (oa + t_body[:, None] * d) @ axis
    t_body = np.where((along >= 0) & (along <= 2 * half_length), t_body, np.inf)
    p = o + t_body[:, None] * d
    n_body = np.nan_to_num((p - a_end - ((p - a_end) @ axis)[:, None] * axis) / radius)
    return _first((t_body, n_body), _hit_sphere(o, d, a_end, radius), _hit_sphere(o, d, b_end, radius))
