"""CLEVR-like scenes: objects with a colour, a shape, a size and a position, and a vectorised renderer.

A scene is a handful of objects on a plane seen from above. Positions are continuous, in the unit square
of the image: ``x`` grows to the right and ``y`` grows downwards (image rows), so "above" means a smaller
``y``. The renderer draws every scene of a batch at once with numpy (no per-pixel Python loops):
a cube is a filled square, a sphere a disc with directional (Lambert) shading, a cylinder a flat disc
with a darker rim.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError

__all__ = [
    "COLORS",
    "SHAPES",
    "SIZES",
    "COLOR_RGB",
    "SIZE_RADIUS",
    "COGENT_COLORS",
    "Scene",
    "sample_scene",
    "render_scenes",
]

COLORS = ("gray", "red", "blue", "green", "brown", "purple", "cyan", "yellow")
SHAPES = ("cube", "sphere", "cylinder")
SIZES = ("small", "large")

#: CLEVR-CoGenT's conditions: condition -> shape -> the colours it may take. In condition ``"A"`` cubes are gray,
#: blue, brown or yellow and cylinders red, green, purple or cyan; in ``"B"`` the two sets are swapped; spheres
#: take any colour in both (Johnson et al. 2017).
COGENT_COLORS: dict[str, dict[str, tuple[str, ...]]] = {
    "A": {"cube": ("gray", "blue", "brown", "yellow"), "sphere": COLORS,
          "cylinder": ("red", "green", "purple", "cyan")},
    "B": {"cube": ("red", "green", "purple", "cyan"), "sphere": COLORS,
          "cylinder": ("gray", "blue", "brown", "yellow")},
}

#: RGB in [0, 1] of each colour of :data:`COLORS`, shape (8, 3).
COLOR_RGB = np.array(
    [
        [0.47, 0.47, 0.47],  # gray
        [0.82, 0.13, 0.12],  # red
        [0.16, 0.30, 0.86],  # blue
        [0.12, 0.62, 0.20],  # green
        [0.50, 0.30, 0.10],  # brown
        [0.52, 0.16, 0.76],  # purple
        [0.12, 0.78, 0.78],  # cyan
        [0.95, 0.86, 0.15],  # yellow
    ],
    dtype=np.float32,
)
#: Object radius of each size of :data:`SIZES`, as a fraction of the image side.
SIZE_RADIUS = (0.085, 0.13)
_BACKGROUND_RGB = np.array([0.80, 0.78, 0.74], dtype=np.float32)
_CUBE_HALF_SIDE = 0.85  # half side of a cube's square, in radii (about the area of the disc)
_MIN_GAP = 0.9  # centres at least this many (r_i + r_j) apart: objects touch but barely overlap
_AXIS_GAP = 0.02  # centres at least this far apart along x and along y, so relations are visible
_CANDIDATES = 40  # positions tried for each object
_PLACE_TRIES = 20
_SCENE_TRIES = 100


def _as_index_array(name: str, values, names: tuple[str, ...]) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind in "US":
        lookup = {v: i for i, v in enumerate(names)}
        bad = [v for v in arr.tolist() if v not in lookup]
        if bad:
            raise ConfigError(f"Scene.{name}: unknown value {bad[0]!r}; accepted: {', '.join(names)}")
        arr = np.array([lookup[v] for v in arr.tolist()], dtype=np.int64)
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise ConfigError(f"Scene.{name} must be a 1-D integer array, got {arr.dtype} of shape {arr.shape}")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= len(names)):
        raise ConfigError(f"Scene.{name} holds indices outside 0..{len(names) - 1}: {arr.tolist()}")
    return arr


@dataclass(frozen=True, eq=False)
class Scene:
    """One scene: ``n`` objects stored as parallel read-only arrays (structure of arrays).

    Attributes:
        color: ``(n,)`` int64, indices into :data:`COLORS`.
        shape: ``(n,)`` int64, indices into :data:`SHAPES`.
        size: ``(n,)`` int64, indices into :data:`SIZES`.
        x: ``(n,)`` float64 in [0, 1], horizontal centre (grows to the right).
        y: ``(n,)`` float64 in [0, 1], vertical centre (grows downwards, like image rows).

    Attribute arrays also accept value names (``color=["red", "blue"]``).

    Example:
        >>> s = Scene.from_objects([{"color": "red", "shape": "cube", "size": "small", "x": 0.2, "y": 0.5}])
        >>> s.n_objects, s.objects()[0]["color"]
        (1, 'red')
    """

    color: np.ndarray
    shape: np.ndarray
    size: np.ndarray
    x: np.ndarray
    y: np.ndarray

    def __post_init__(self) -> None:
        arrays = {
            "color": _as_index_array("color", self.color, COLORS),
            "shape": _as_index_array("shape", self.shape, SHAPES),
            "size": _as_index_array("size", self.size, SIZES),
        }
        for name in ("x", "y"):
            arr = np.asarray(getattr(self, name), dtype=np.float64)
            if arr.ndim != 1 or not np.all((arr >= 0.0) & (arr <= 1.0)):
                raise ConfigError(f"Scene.{name} must be a 1-D array of values in [0, 1], got {arr.tolist()}")
            arrays[name] = arr
        lengths = {k: len(v) for k, v in arrays.items()}
        if len(set(lengths.values())) != 1:
            raise ConfigError(f"Scene arrays must all have the same length, got {lengths}")
        for name, arr in arrays.items():
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    @property
    def n_objects(self) -> int:
        """Number of objects in the scene."""
        return len(self.x)

    @classmethod
    def from_objects(cls, objects: Sequence[Mapping]) -> Scene:
        """Build a scene from a list of ``{"color", "shape", "size", "x", "y"}`` mappings (value names)."""
        keys = ("color", "shape", "size", "x", "y")
        for i, obj in enumerate(objects):
            missing = [k for k in keys if k not in obj]
            if missing:
                raise ConfigError(f"object {i} lacks {missing}; each object needs the keys {list(keys)}")
        cols = {k: [obj[k] for obj in objects] for k in keys}
        if not objects:
            cols = {
                "color": np.zeros(0, np.int64),
                "shape": np.zeros(0, np.int64),
                "size": np.zeros(0, np.int64),
                "x": [],
                "y": [],
            }
        return cls(**cols)

    def objects(self) -> list[dict]:
        """The objects as ``{"color", "shape", "size", "x", "y"}`` dicts with value names."""
        return [
            {
                "color": COLORS[c],
                "shape": SHAPES[s],
                "size": SIZES[z],
                "x": float(x),
                "y": float(y),
            }
            for c, s, z, x, y in zip(self.color, self.shape, self.size, self.x, self.y, strict=True)
        ]

    def with_object(self, index: int, **changes) -> Scene:
        """A copy of the scene with object ``index`` changed, e.g. ``scene.with_object(0, color="blue")``."""
        objs = self.objects()
        if not -len(objs) <= index < len(objs):
            raise ConfigError(f"object index {index} out of range for a scene of {len(objs)} objects")
        unknown = set(changes) - {"color", "shape", "size", "x", "y"}
        if unknown:
            raise ConfigError(f"unknown object fields {sorted(unknown)}; accepted: color, shape, size, x, y")
        objs[index].update(changes)
        return Scene.from_objects(objs)


def _place(rng: np.random.Generator, radius: np.ndarray) -> tuple[list[float], list[float]] | None:
    """Centres for objects of the given radii that barely overlap, or ``None`` when packing fails.

    Plain Python over at most 10 objects: cheaper than numpy on such tiny arrays.

    Args:
        radius: ``(n,)`` object radii.

    Returns:
        ``(x, y)``, two lists of ``n`` centres, or ``None``.
    """
    n = len(radius)
    rad = [float(r) for r in radius]
    # Large objects first: the small ones fit into the gaps that are left.
    order = sorted(range(n), key=lambda i: -rad[i])
    pool = rng.random(2 * _CANDIDATES * n).tolist()
    xs, ys = [0.0] * n, [0.0] * n
    placed: list[int] = []
    p = 0
    for i in order:
        r = rad[i]
        span = 1.0 - 2.0 * r
        for _ in range(_CANDIDATES):
            cx, cy = r + span * pool[p], r + span * pool[p + 1]
            p += 2
            for j in placed:
                dx, dy = cx - xs[j], cy - ys[j]
                gap = _MIN_GAP * (r + rad[j])
                if abs(dx) < _AXIS_GAP or abs(dy) < _AXIS_GAP or dx * dx + dy * dy < gap * gap:
                    break
            else:
                xs[i], ys[i] = cx, cy
                placed.append(i)
                break
        else:
            return None
    return xs, ys


def sample_scene(
    rng: np.random.Generator, *, min_objects: int = 2, max_objects: int = 10, condition: str | None = None
) -> Scene:
    """Draw a random scene with ``min_objects..max_objects`` objects (uniform) and uniform attributes.

    With a CoGenT ``condition`` (``"A"`` or ``"B"``, see :data:`COGENT_COLORS`) each object's shape is drawn
    first and its colour uniformly among those the condition allows that shape.

    Objects barely overlap (centres at least ``0.9 (r_i + r_j)`` apart) and no two centres share
    nearly the same row or column, so left/right/above/below are visible in the image. When the objects
    cannot be placed, the whole scene is drawn again.

    Raises:
        ConfigError: ``min_objects`` / ``max_objects`` outside ``1 <= min_objects <= max_objects <= 10``, or a
            ``condition`` other than ``None``, ``"A"`` and ``"B"``.
    """
    ints = isinstance(min_objects, int) and isinstance(max_objects, int)
    if not (ints and 1 <= min_objects <= max_objects <= 10):
        raise ConfigError(
            f"min_objects={min_objects!r}, max_objects={max_objects!r}: need integers with "
            "1 <= min_objects <= max_objects <= 10"
        )
    if condition is not None and condition not in COGENT_COLORS:
        accepted = " or ".join(map(repr, COGENT_COLORS))
        raise ConfigError(f"condition={condition!r}; accepted: None or a CoGenT condition, {accepted}")
    radii = np.asarray(SIZE_RADIUS)
    for _ in range(_SCENE_TRIES):
        n = int(rng.integers(min_objects, max_objects + 1))
        if condition is None:
            color = rng.integers(0, len(COLORS), n)
            shape = rng.integers(0, len(SHAPES), n)
        else:
            shape = rng.integers(0, len(SHAPES), n)
            color = _cogent_colors(rng, shape, condition)
        size = rng.integers(0, len(SIZES), n)
        # Placing the same objects again first keeps crowded scenes as likely as the others.
        for _ in range(_PLACE_TRIES):
            pos = _place(rng, radii[size])
            if pos is not None:
                return Scene(color=color, shape=shape, size=size, x=pos[0], y=pos[1])
    raise RuntimeError(f"could not place {max_objects} objects in {_SCENE_TRIES} tries")  # pragma: no cover


def _cogent_colors(rng: np.random.Generator, shape: np.ndarray, condition: str) -> np.ndarray:
    """``(n,)`` colour indices drawn uniformly among those ``condition`` allows each object's ``shape`` (n,)."""
    allowed = [[COLORS.index(c) for c in COGENT_COLORS[condition][name]] for name in SHAPES]
    pick = rng.random(len(shape))
    picks = zip(shape.tolist(), pick.tolist(), strict=True)
    return np.array([allowed[s][int(u * len(allowed[s]))] for s, u in picks], dtype=np.int64)


def _shade(ux: np.ndarray, uy: np.ndarray, shape: np.ndarray, rim: np.ndarray) -> np.ndarray:
    """Brightness of object pixels from their offsets to the object's centre, in radii.

    Args:
        ux, uy: ``(M,)`` offsets (x and y) of each object pixel from its object's centre, in radii.
        shape: ``(M,)`` shape index of the pixel's object.
        rim: ``(M,)`` cylinder rim width of the pixel's object, in radii.

    Returns:
        ``(M,)`` float32 brightness factors.
    """
    uz = np.sqrt(np.clip(1.0 - ux * ux - uy * uy, 0.0, 1.0))
    # Sphere: Lambert shading under a light from the upper left; a cube is flat; a cylinder is a flat
    # top with a dark rim at least one pixel wide.
    sphere = 0.3 + 0.8 * np.clip(-0.5 * ux - 0.5 * uy + 0.7071 * uz, 0.0, 1.0)
    cylinder = np.where(ux * ux + uy * uy >= (1.0 - rim) ** 2, 0.45, 1.0)
    return np.select([shape == 0, shape == 1], [np.float32(0.9), sphere], cylinder).astype(np.float32)


def _render_all(scenes: Sequence[Scene], image_size: int) -> np.ndarray:
    """Render every object of every scene at once on its own small patch; returns ``(S, 3, H, W)``.

    Each object is drawn on a ``P x P`` pixel patch around its centre (``P`` covers the largest object),
    so the work is proportional to the objects' area, not to objects x image. Where objects overlap,
    the later object of the scene is on top (a z-buffer keeps the highest object index per pixel).
    """
    hw = image_size
    counts = np.array([s.n_objects for s in scenes])
    sid = np.repeat(np.arange(len(scenes)), counts)  # (N,) scene of each object
    xs = np.concatenate([s.x for s in scenes]).astype(np.float32)  # (N,)
    ys = np.concatenate([s.y for s in scenes]).astype(np.float32)
    size = np.concatenate([s.size for s in scenes])
    shp = np.concatenate([s.shape for s in scenes])
    col = np.concatenate([s.color for s in scenes])
    rad = np.asarray(SIZE_RADIUS, np.float32)[size]
    canvas = np.empty((len(scenes) * hw * hw, 3), np.float32)
    canvas[:] = _BACKGROUND_RGB
    if len(xs) == 0:
        return canvas.reshape(len(scenes), hw, hw, 3).transpose(0, 3, 1, 2).copy()

    p = int(np.ceil(2 * float(rad.max()) * hw)) + 2
    ox = np.floor(xs * hw).astype(np.int64) - p // 2  # (N,) patch origin, pixels
    oy = np.floor(ys * hw).astype(np.int64) - p // 2
    px = ox[:, None] + np.arange(p)  # (N, P) pixel columns of each patch
    py = oy[:, None] + np.arange(p)  # (N, P) pixel rows
    r = rad[:, None, None]
    dx = ((px + 0.5) / hw - xs[:, None]).astype(np.float32)[:, None, :] / r  # (N, 1, P), in radii
    dy = ((py + 0.5) / hw - ys[:, None]).astype(np.float32)[:, :, None] / r  # (N, P, 1)
    is_cube = (shp == 0)[:, None, None]
    square = (np.abs(dx) <= _CUBE_HALF_SIDE) & (np.abs(dy) <= _CUBE_HALF_SIDE)
    disc = dx * dx + dy * dy <= 1.0
    inside = ((px >= 0) & (px < hw))[:, None, :] & ((py >= 0) & (py < hw))[:, :, None]
    cover = np.where(is_cube, square, disc) & inside  # (N, P, P)

    obj, i, j = np.nonzero(cover)  # obj ascending: later objects come later
    flat = (sid[obj] * hw + py[obj, i]) * hw + px[obj, j]  # (M,) pixel index in the canvas
    zbuf = np.full(len(canvas), -1, np.int64)
    np.maximum.at(zbuf, flat, obj)
    top = zbuf[flat] == obj
    obj, i, j, flat = obj[top], i[top], j[top], flat[top]
    rim = np.maximum(0.3, 1.0 / (hw * rad))[obj]
    shade = _shade(dx[obj, 0, j], dy[obj, i, 0], shp[obj], rim)  # (M,)
    canvas[flat] = COLOR_RGB[col[obj]] * shade[:, None]
    return canvas.reshape(len(scenes), hw, hw, 3).transpose(0, 3, 1, 2).copy()


def render_scenes(
    scenes: Sequence[Scene],
    image_size: int = 48,
    *,
    rng: np.random.Generator | None = None,
    noise: float = 0.02,
) -> np.ndarray:
    """Render scenes top-down to RGB images.

    Args:
        scenes: ``S`` scenes.
        image_size: side ``H = W`` of the images in pixels (at least 16).
        rng: source of the pixel noise; ``None`` renders without noise.
        noise: standard deviation of the (uniform) pixel noise added to every pixel.

    Returns:
        ``(S, 3, H, W)`` float32 images in [0, 1].

    Raises:
        ConfigError: ``image_size`` below 16 or ``noise`` negative.
    """
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 16:
        raise ConfigError(f"image_size must be an integer >= 16, got {image_size!r}")
    if not noise >= 0.0:
        raise ConfigError(f"noise must be >= 0, got {noise!r}")
    if len(scenes) == 0:
        return np.empty((0, 3, image_size, image_size), np.float32)
    out = _render_all(scenes, image_size)
    if rng is not None and noise > 0:
        # Uniform noise with standard deviation `noise` (cheaper to draw than Gaussian noise).
        jitter = rng.random(out.shape, dtype=np.float32)
        jitter -= 0.5
        jitter *= noise * np.sqrt(12.0)
        out += jitter
        np.clip(out, 0.0, 1.0, out=out)
    return out
