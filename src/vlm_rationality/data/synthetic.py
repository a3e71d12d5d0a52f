"""The embedded synthetic benchmark: shapes on textures with a controllable spurious background cue.

Every image holds one foreground shape (the class) on a background texture; pretraining captions name the
shape and, independently, its colour and background. In the `train` split the
texture is tied to the class with strength ``rho``: with probability ``rho`` a sample shows its class's own
texture, otherwise a uniformly drawn one. A model fine-tuned on a strongly tied split can be right for the
wrong reason (the background), which is exactly what RMA/PT/IR are meant to expose on a decorrelated test
split. The object mask is the set of pixels painted with the object colour, so it is exact by construction.

Each sample is generated from its own seed ``(seed, split, index)``: any sample can be made on its own, in
any order or process, and the same seed always gives the same bytes.

A split's `kind` makes the robustness sets from the same generator: `held_out_shape` draws a shape outside the
classes (out of distribution, label -1), `texture_only` a background with no object (OOD, label -1, empty mask),
`cue_conflict` the class shape on the background tied to another class (shape bias: the `background` column is
the texture's class).

`cue: sticker` moves the spurious feature from the whole background to one place, as RaVL's own synthetic settings
do: backgrounds become independent of the class, and a small striped sticker (a non-square rectangle in colours no
object or texture has, never touching an object pixel) is tied to one class with strength ``rho``. Its exact mask is
the `cue_mask` column of the prepared shards.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np

from vlm_rationality.data.base import DATASET_ADAPTERS, STICKER_MISSING, Dataset, Item, Sample
from vlm_rationality.data.twins import Pool, Twins
from vlm_rationality.visual_factors import Factors

# In the order classes are taken (`num_classes` takes the first ones). Diamond and hexagon come last: within a
# few degrees of rotation a diamond is a turned square, and at 8-pixel patches a hexagon is nearly a circle.
SHAPES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "star",
    "cross",
    "ring",
    "crescent",
    "arrow",
    "diamond",
    "hexagon",
)
TEXTURES: tuple[str, ...] = (
    "stripes",
    "checks",
    "dots",
    "waves",
    "grid",
    "diagonals",
    "noise",
    "zigzag",
    "rings",
    "bricks",
)
# Saturated object colours, named in captions.
OBJECT_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 190, 50),
    "blue": (40, 70, 230),
    "yellow": (240, 220, 30),
    "purple": (150, 40, 200),
    "orange": (250, 140, 20),
    "white": (250, 250, 250),
    "cyan": (30, 220, 230),
}
# Each texture has its own muted hue (a dark and a light tone): the background is recognisable at a glance,
# which is what makes it a shortcut, while the class still needs the shape. Every tone stays below 160 in
# each channel and every object colour reaches 190 in one, so an object never blends into its background.
TEXTURE_TONES: np.ndarray = np.array(
    [
        [(50, 60, 90), (90, 100, 140)],  # stripes: blue-grey
        [(80, 60, 40), (130, 100, 70)],  # checks: brown
        [(50, 80, 55), (90, 130, 95)],  # dots: green-grey
        [(80, 55, 90), (125, 95, 140)],  # waves: purple-grey
        [(40, 85, 85), (80, 135, 130)],  # grid: teal
        [(90, 45, 50), (140, 85, 90)],  # diagonals: maroon
        [(85, 85, 40), (135, 135, 75)],  # noise: olive
        [(60, 60, 60), (110, 110, 110)],  # zigzag: grey
        [(40, 50, 100), (85, 95, 150)],  # rings: navy
        [(100, 60, 40), (150, 100, 70)],  # bricks: rust
    ],
    dtype=np.float32,
)
SPLITS: dict[str, int] = {"pretrain": 0, "train": 1, "test": 2}  # seed streams; other names hash to their own
KINDS = ("standard", "held_out_shape", "texture_only", "cue_conflict")
OOD_LABEL = -1  # the label of a sample of no class
TWIN_STREAM = 1000  # a twin's background on texture t is drawn from the seed (seed, split stream, index, 1000 + t)
STICKER_TWIN_STREAM = 999  # where a twin that gains the sticker its sample lacks places it: (seed, stream, index, 999)
PROMPT_TEMPLATE = "a photo of a {name}"
CUES = ("background", "sticker")
# The sticker: vertical stripes of these two colours (pink and black: no object colour and no texture tone), its
# width `sticker_size` of the image side and its height 5/8 of that, never square, so never a class shape.
STICKER_COLOURS = np.array([(255, 105, 180), (0, 0, 0)], dtype=np.float32)
STICKER_MARGIN = 1  # pixels between the sticker and the nearest object pixel


@dataclass(frozen=True)
class SyntheticSpec:
    """What a synthetic split looks like; every field is a config key."""

    num_classes: int = 8
    num_textures: int = 8
    image_size: int = 64
    seed: int = 0
    min_scale: float = 0.22
    max_scale: float = 0.4
    max_rotation: float = 180.0  # degrees either way
    jitter: float = 1.0  # fraction of the free range the object centre may move in
    noise: float = 6.0
    caption_detail: float = 0.1  # how often a caption also names the colour, and (independently) the background
    cue: str = "background"  # what rho ties to the class: the whole background, or a sticker (module docstring)
    sticker_class: int = 0  # the class the sticker is tied to
    sticker_rate: float = 0.5  # how often an image not tied by rho carries the sticker
    sticker_size: float = 0.25  # the sticker's width, a share of the image side

    def __post_init__(self) -> None:
        if not 2 <= self.num_classes <= len(SHAPES):
            raise ValueError(f"synthetic.num_classes must be in [2, {len(SHAPES)}], got {self.num_classes}")
        if not 1 <= self.num_textures <= len(TEXTURES):
            raise ValueError(f"synthetic.num_textures must be in [1, {len(TEXTURES)}], got {self.num_textures}")
        if self.image_size < 16:
            raise ValueError(f"synthetic.image_size must be >= 16, got {self.image_size}")
        if not 0 < self.min_scale <= self.max_scale < 0.5:
            raise ValueError("synthetic scales need 0 < min_scale <= max_scale < 0.5")
        if not 0 <= self.max_rotation <= 180 or not 0 <= self.jitter <= 1:
            raise ValueError("synthetic max_rotation must be in [0, 180] degrees and jitter in [0, 1]")
        if not 0 <= self.caption_detail <= 1:
            raise ValueError(f"synthetic.caption_detail must be in [0, 1], got {self.caption_detail}")
        if self.cue not in CUES:
            raise ValueError(f"synthetic.cue must be one of {', '.join(CUES)}, got {self.cue!r}")
        if not 0 <= self.sticker_class < self.num_classes:
            raise ValueError(
                f"synthetic.sticker_class must be a class index in [0, {self.num_classes}), got {self.sticker_class}"
            )
        if not 0 <= self.sticker_rate <= 1 or not 0 < self.sticker_size <= 0.5:
            raise ValueError("synthetic.sticker_rate must be in [0, 1] and sticker_size in (0, 0.5]")

    @property
    def sticker_shape(self) -> tuple[int, int]:
        """(height, width) of the sticker in pixels."""
        width = max(2, round(self.sticker_size * self.image_size))
        return max(1, round(width * 5 / 8)), width

    @property
    def class_names(self) -> list[str]:
        return list(SHAPES[: self.num_classes])

    @property
    def texture_names(self) -> list[str]:
        return list(TEXTURES[: self.num_textures])

    def own_texture(self, label: int) -> int:
        """The background a class is tied to in a spuriously correlated split."""
        return label % self.num_textures


def _polygon_mask(u: np.ndarray, v: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test on a pixel grid (vectorised over pixels, looped over edges)."""
    inside = np.zeros(u.shape, dtype=bool)
    x0, y0 = vertices[-1]
    for x1, y1 in vertices:
        crosses = (y1 > v) != (y0 > v)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = (x0 - x1) * (v - y1) / (y0 - y1) + x1
        inside ^= crosses & (u < x_at)
        x0, y0 = x1, y1
    return inside


def _regular(n: int, radius: float = 1.0, phase: float = math.pi / 2) -> np.ndarray:
    angles = phase + 2 * math.pi * np.arange(n) / n
    return np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1)


def shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Indicator of `shape` in unit local coordinates (the shape spans roughly [-1, 1]^2)."""
    r2 = u * u + v * v
    if shape == "circle":
        return r2 <= 1.0
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.8
    if shape == "triangle":
        return _polygon_mask(u, v, _regular(3))
    if shape == "star":
        outer, inner = _regular(5), _regular(5, 0.42, math.pi / 2 + math.pi / 5)
        return _polygon_mask(u, v, np.stack([outer, inner], axis=1).reshape(-1, 2))
    if shape == "cross":
        return ((np.abs(u) <= 0.3) & (np.abs(v) <= 1.0)) | ((np.abs(v) <= 0.3) & (np.abs(u) <= 1.0))
    if shape == "ring":
        return (r2 <= 1.0) & (r2 >= 0.5**2)
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= 1.0
    if shape == "hexagon":
        return _polygon_mask(u, v, _regular(6, phase=0.0))
    if shape == "crescent":
        return (r2 <= 1.0) & ((u - 0.45) ** 2 + v * v > 0.75**2)
    if shape == "arrow":
        head = _polygon_mask(u, v, np.array([[1.0, 0.0], [0.1, 0.8], [0.1, -0.8]]))
        return head | ((u >= -1.0) & (u <= 0.1) & (np.abs(v) <= 0.3))
    raise KeyError(f"unknown synthetic shape {shape!r}; known: {', '.join(SHAPES)}")


def texture_pattern(texture: str, x: np.ndarray, y: np.ndarray, period: float, rng: np.random.Generator) -> np.ndarray:
    """A two-tone pattern in [0, 1] over pixel coordinates; `period` (pixels) and phase vary per sample."""
    px, py = x / period + rng.uniform(0, 1), y / period + rng.uniform(0, 1)
    if texture == "stripes":
        return (np.floor(py * 2) % 2).astype(np.float32)
    if texture == "checks":
        return ((np.floor(px) + np.floor(py)) % 2).astype(np.float32)
    if texture == "dots":
        return (((px % 1 - 0.5) ** 2 + (py % 1 - 0.5) ** 2) < 0.09).astype(np.float32)
    if texture == "waves":
        return (0.5 + 0.5 * np.sin(2 * math.pi * (px + 0.35 * np.sin(2 * math.pi * py * 0.5)))).astype(np.float32)
    if texture == "grid":
        return (((px % 1) < 0.2) | ((py % 1) < 0.2)).astype(np.float32)
    if texture == "diagonals":
        return (np.floor(px + py) % 2).astype(np.float32)
    if texture == "noise":
        coarse = rng.uniform(0, 1, size=(int(x.shape[0] / period) + 2, int(x.shape[1] / period) + 2))
        return coarse[(y / period).astype(int), (x / period).astype(int)].astype(np.float32)
    if texture == "zigzag":
        return (np.floor(py * 2 + np.abs((px % 1) - 0.5) * 2) % 2).astype(np.float32)
    if texture == "rings":
        cx, cy = rng.uniform(0, x.shape[1]), rng.uniform(0, x.shape[0])
        return (np.floor(np.hypot(x - cx, y - cy) / period * 2) % 2).astype(np.float32)
    if texture == "bricks":
        row = np.floor(py * 2)
        return (((py * 2) % 1 < 0.2) | (((px + 0.5 * (row % 2)) % 1) < 0.1)).astype(np.float32)
    raise KeyError(f"unknown synthetic texture {texture!r}; known: {', '.join(TEXTURES)}")


def sample_rng(seed: int, split: str, index: int, *twin: int) -> np.random.Generator:
    """The three named splits keep their streams; any other name (val, ood_shape, …) gets one from its hash. `twin`:
    a stream of the sample's own for one of its twins."""
    stream = SPLITS.get(split, len(SPLITS) + zlib.crc32(split.encode()))
    return np.random.default_rng([seed, stream, index, *twin])


def check_kind(spec: SyntheticSpec, kind: str) -> None:
    if kind not in KINDS:
        raise KeyError(f"unknown synthetic split kind {kind!r}; known: {', '.join(KINDS)}")
    if kind == "held_out_shape" and spec.num_classes == len(SHAPES):
        raise ValueError(f"kind held_out_shape needs a shape outside the classes: num_classes < {len(SHAPES)}")
    if kind == "cue_conflict" and spec.cue != "background":
        raise ValueError("kind cue_conflict puts a class on another class's background: it needs cue: background")
    if kind == "cue_conflict" and spec.num_textures < spec.num_classes:
        raise ValueError("kind cue_conflict ties every class to its own texture: num_textures >= num_classes")


def _texture_image(
    spec: SyntheticSpec, texture: int, x: np.ndarray, y: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """A float [S, S, 3] background of `texture`: its two tones jittered, its pattern at a random period and phase."""
    tones = TEXTURE_TONES[texture] + rng.uniform(-8, 8, size=(2, 3))
    pattern = texture_pattern(spec.texture_names[texture], x, y, rng.uniform(0.12, 0.2) * spec.image_size, rng)
    return tones[0] + pattern[..., None] * (tones[1] - tones[0])


def make_sample(
    spec: SyntheticSpec,
    split: str,
    index: int,
    rho: float = 0.0,
    kind: str = "standard",
    draw_object: bool = True,
    sticker: bool | None = None,
) -> Sample:
    """Generate sample `index` of `split`; `rho` ties the background to the class (train/test only); `kind` as
    the module says. `extra` holds the caption, the background texture index and the object colour name.
    `draw_object=False` makes the same image without its object (every random draw is the same, so every pixel
    off the object is bit-identical): the background-alone twin. `sticker` (cue: sticker) forces the sticker on or
    off, again with every other pixel bit-identical: the sticker twin.
    """
    if not 0.0 <= rho <= 1.0:
        raise ValueError(f"spurious strength rho must be in [0, 1], got {rho}")
    rng = sample_rng(spec.seed, split, index)
    size = spec.image_size
    label = int(rng.integers(spec.num_classes))
    tied = split != "pretrain" and rng.uniform() < rho
    background = spec.own_texture(label) if tied and spec.cue == "background" else int(rng.integers(spec.num_textures))
    shape = spec.class_names[label]
    if kind == "cue_conflict":  # another class's own texture, uniformly among the others
        background = spec.own_texture((label + 1 + int(rng.integers(spec.num_classes - 1))) % spec.num_classes)
    elif kind == "held_out_shape":
        shape, label = SHAPES[spec.num_classes + int(rng.integers(len(SHAPES) - spec.num_classes))], OOD_LABEL
    elif kind == "texture_only":
        label = OOD_LABEL

    y, x = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    image = _texture_image(spec, background, x, y, rng)

    scale = rng.uniform(spec.min_scale, spec.max_scale) * size
    free = (size / 2 - scale * 1.05) * spec.jitter
    cx, cy = size / 2 + rng.uniform(-free, free, size=2)
    angle = math.radians(rng.uniform(-spec.max_rotation, spec.max_rotation))
    cos, sin = math.cos(angle), math.sin(angle)
    u = ((x - cx) * cos + (y - cy) * sin) / scale
    v = (-(x - cx) * sin + (y - cy) * cos) / scale
    body = shape_mask(shape, u, v) if kind != "texture_only" else np.zeros((size, size), bool)
    mask = body if draw_object else np.zeros_like(body)

    colour = list(OBJECT_COLOURS)[int(rng.integers(len(OBJECT_COLOURS)))]
    image[mask] = np.asarray(OBJECT_COLOURS[colour], dtype=np.float32)
    extra: dict[str, Any] = {}
    if spec.cue == "sticker":  # every draw of the sticker comes after the background cue's, which stay as they were
        carries = label == spec.sticker_class if tied else rng.uniform() < spec.sticker_rate
        shown = carries if sticker is None else sticker
        cue_mask = np.zeros((size, size), bool)
        if carries:  # its place drawn from the sample's stream, also when a twin leaves it off
            cue_mask = _sticker(spec, image if shown else image.copy(), body, rng)
        elif shown:  # a twin given the sticker its sample lacks: the place from the twin's own stream
            cue_mask = _sticker(spec, image, body, sample_rng(spec.seed, split, index, STICKER_TWIN_STREAM))
        extra["cue_mask"] = cue_mask if shown else np.zeros((size, size), bool)
        if carries and not cue_mask.any():  # no place beside the object fits it: counted by the prepare stage
            extra[STICKER_MISSING] = True
    image += rng.normal(0.0, spec.noise, size=image.shape)
    image_u8 = np.clip(np.rint(image), 0, 255).astype(np.uint8)

    caption = _caption(shape, colour, spec.texture_names[background], rng, spec.caption_detail)
    extra.update(caption=caption, background=background, colour=colour)
    # the draws the visual factors read (data/synthetic.py's `factors`): none is stored in the prepared shards
    offset = math.hypot(cx - size / 2, cy - size / 2) / size
    extra.update(rotation=abs(math.degrees(angle)), scale=scale / size, offset=offset)
    return Sample(f"{split}-{index:06d}", label, image_u8, mask, "synthetic", extra)


def _sticker(spec: SyntheticSpec, image: np.ndarray, body: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Paint the sticker on `image` where it keeps STICKER_MARGIN pixels from every object pixel (`body`, also when
    the object itself is not drawn), uniformly among such places; returns its exact mask (empty where none fits)."""
    size = spec.image_size
    height, width = spec.sticker_shape
    pad = STICKER_MARGIN
    covered = np.pad(body, 1 + pad).cumsum(0).cumsum(1)  # summed-area table of the object, padded for the margin
    top, left = np.mgrid[0 : size - height + 1, 0 : size - width + 1]
    y0, x0, y1, x1 = top, left, top + height + 2 * pad + 1, left + width + 2 * pad + 1
    touching = covered[y1 - 1, x1 - 1] - covered[y0, x1 - 1] - covered[y1 - 1, x0] + covered[y0, x0]
    free = np.flatnonzero(touching == 0)
    mask = np.zeros((size, size), bool)
    if not len(free):
        return mask
    y, x = np.unravel_index(free[int(rng.integers(len(free)))], top.shape)
    mask[y : y + height, x : x + width] = True
    stripes = (np.arange(width) // max(1, width // 4)) % 2  # four stripes across
    image[y : y + height, x : x + width] = STICKER_COLOURS[stripes][None]
    return mask


def _caption(shape: str, colour: str, texture: str, rng: np.random.Generator, detail: float) -> str:
    """Always the shape; colour and background each independently with probability `detail`, the "a photo of"
    prefix half the time, so that the class prompt "a photo of a {shape}" is itself a caption the text tower
    has seen."""
    colour_draw, texture_draw, photo_draw = rng.uniform(size=3)
    with_colour, with_texture, photo = colour_draw < detail, texture_draw < detail, photo_draw < 0.5
    words = f"{colour} {shape}" if with_colour else shape
    words = f"{words} on {texture}" if with_texture else words
    article = "an" if words[0] in "aeiou" else "a"
    return f"a photo of {article} {words}" if photo else f"{article} {words}"


def generate(
    spec: SyntheticSpec, split: str, count: int, rho: float = 0.0, start: int = 0, kind: str = "standard"
) -> Iterator[Sample]:
    """Samples `start … start+count-1` of a split, in order."""
    for index in range(start, start + count):
        yield make_sample(spec, split, index, rho, kind)


def render_twins(
    spec: SyntheticSpec,
    split: str,
    index: int,
    image: np.ndarray,
    mask: np.ndarray,
    rho: float = 0.0,
    kind: str = "standard",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The counterfactual twins of sample `index` (its prepared `image` and `mask`): its object on every texture
    (each texture freshly drawn from the twin's own seed, the object's pixels copied bit for bit) and, for the
    sticker cue, the sample with its sticker toggled (removed, or added where it had none; every other pixel the
    same), uint8 [K, S, S, 3]; the original background without the object, uint8 [S, S, 3]; and which twins show
    the sticker, bool [K] (the texture twins keep the sample's own sticker pixels)."""
    size = spec.image_size
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    stream = SPLITS.get(split, len(SPLITS) + zlib.crc32(split.encode()))
    cue = make_sample(spec, split, index, rho, kind).extra["cue_mask"] if spec.cue == "sticker" else None
    kept = mask if cue is None else mask | cue
    twins = np.empty((spec.num_textures, size, size, 3), np.uint8)
    for texture in range(spec.num_textures):
        rng = np.random.default_rng([spec.seed, stream, index, TWIN_STREAM + texture])
        background = _texture_image(spec, texture, x, y, rng) + rng.normal(0.0, spec.noise, size=(size, size, 3))
        twins[texture] = np.where(kept[..., None], image, np.clip(np.rint(background), 0, 255).astype(np.uint8))
    shows = np.full(spec.num_textures, cue is not None and bool(cue.any()))
    if cue is not None:
        toggled = make_sample(spec, split, index, rho, kind, sticker=not cue.any())
        twins = np.concatenate([twins, toggled.image[None]])
        shows = np.append(shows, bool(toggled.extra["cue_mask"].any()))
    return twins, make_sample(spec, split, index, rho, kind, draw_object=False).image, shows


# The generator's visual factors, ImageNet-X's names where the meaning is theirs: each marks the third of a split's
# samples furthest from the typical one along a drawn quantity (strictly beyond its tertile, so a quantity that does
# not vary marks none), and `background` the samples whose spurious cue points away from their class.
FACTORS: tuple[str, ...] = ("pose", "smaller", "larger", "position", "low_contrast", "background")
LUMINANCE = np.array([0.2126, 0.7152, 0.0722], np.float32)


def sample_factors(spec: SyntheticSpec, split: str, index: int, rho: float, kind: str) -> dict[str, float]:
    """What the generator drew for one sample: its rotation (degrees from upright), size (a share of the image side),
    distance of the object's centre from the image's (a share of the side), object-background luminance contrast,
    and whether its cue points away from its class (background cue: not its class's texture; sticker: shown on
    another class, or missing on the sticker's class)."""
    sample = make_sample(spec, split, index, rho, kind)
    luminance = sample.image.astype(np.float32) @ LUMINANCE
    body = sample.mask
    contrast = abs(float(luminance[body].mean() - luminance[~body].mean())) if body.any() else 0.0
    if spec.cue == "sticker":
        away = bool(sample.extra["cue_mask"].any()) != (sample.label == spec.sticker_class)
    else:
        away = sample.extra["background"] != spec.own_texture(sample.label)
    extra = sample.extra
    return {
        "rotation": extra["rotation"],
        "scale": extra["scale"],
        "offset": extra["offset"],
        "contrast": contrast,
        "away": float(away),
    }


def _tertiles(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """bool [N] twice: strictly below the lower tertile, strictly above the upper one."""
    low, high = np.quantile(values, [1 / 3, 2 / 3])
    return values < low, values > high


def class_prompts(spec: SyntheticSpec, template: str = PROMPT_TEMPLATE) -> list[str]:
    return [template.format(name=name) for name in spec.class_names]


@DATASET_ADAPTERS.register("synthetic")
class SyntheticDataset(Dataset):
    """The generator as a dataset adapter: `splits` maps split name -> {size, rho}."""

    extra_columns = ("caption", "background")
    factor_source = "the generator's own draws (rotation, size, position, contrast, the cue)"
    # The generator's fields are the options (their defaults are SyntheticSpec's; image_size is a common key).
    options = {
        name: {"type": {"int": "integer", "str": "string"}.get(field.type, "number"), "default": field.default}
        for name, field in SyntheticSpec.__dataclass_fields__.items()
        if name != "image_size"
    }
    options["cue"]["enum"] = list(CUES)
    split_options = {
        "size": {"type": "integer", "minimum": 1},
        "rho": {
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "default": 0.0,
            "description": "how often a training image shows its class's own background",
        },
        # No default written in: a split that leaves it out keeps the job params (and the results) it had before.
        "kind": {
            "type": "string",
            "enum": list(KINDS),
            "description": "absent: standard; held_out_shape, texture_only (OOD sets, label -1) or cue_conflict "
            "(shape bias)",
        },
    }

    def __init__(self, splits: dict[str, dict[str, Any]], **spec: Any) -> None:
        self.spec = SyntheticSpec(**spec)
        self.image_size = self.spec.image_size
        if self.spec.cue == "sticker":
            self.extra_columns = (*self.extra_columns, "cue_mask")
        for name, split in splits.items():
            if split.get("size", 0) < 1:  # the config schema requires it; a direct caller may not give it
                raise ValueError(f"synthetic split {name!r}: size must be >= 1")
            try:
                check_kind(self.spec, split.get("kind", "standard"))
            except (KeyError, ValueError) as err:
                raise ValueError(f"synthetic split {name!r}: {err.args[0]}") from None
        self.splits = splits

    @property
    def class_names(self) -> list[str]:
        return self.spec.class_names

    def tied_backgrounds(self) -> list[int] | None:
        if self.spec.cue != "background":
            return None
        return [self.spec.own_texture(label) for label in range(self.spec.num_classes)]

    def sticker_class(self) -> int | None:
        return self.spec.sticker_class if self.spec.cue == "sticker" else None

    def background_names(self) -> list[str]:
        return self.spec.texture_names

    def needs_masks(self, split: str) -> bool:
        return self.splits[split].get("kind") != "texture_only"  # a background with no object

    def known_size(self, split: str) -> int:
        if split not in self.splits:
            raise KeyError(f"synthetic dataset has no split {split!r}; configured: {', '.join(self.splits)}")
        return int(self.splits[split]["size"])

    def items(self, split: str) -> list[Item]:
        """Generated, not listed: each item's label is the first draw of its own seed (as in `make_sample`)."""
        ood = self.splits.get(split, {}).get("kind") in ("held_out_shape", "texture_only")
        return [
            Item(
                f"{split}-{i:06d}",
                OOD_LABEL if ood else int(sample_rng(self.spec.seed, split, i).integers(self.spec.num_classes)),
                None,
            )
            for i in range(self.known_size(split))
        ]

    def twins(
        self,
        split: str,
        sample_ids: Sequence[str],
        labels: np.ndarray,
        images: np.ndarray,
        masks: np.ndarray,
        pool: Pool,
        count: int,
        seed: int,
    ) -> Twins:
        """Every texture rendered afresh under each object, and for the sticker cue the sample with its sticker
        toggled (`count`, `pool` and `seed` are not needed: the sample's own seed decides); the sample regenerated
        without its object. `same_class`: the twin shows the cue tied to the sample's class (its own background, or
        the sticker on a sample of the sticker's class)."""
        entry = self.splits[split]
        rendered = [
            render_twins(
                self.spec,
                split,
                int(sample_id[len(split) + 1 :]),
                image,
                mask,
                float(entry["rho"]),
                entry.get("kind", "standard"),
            )
            for sample_id, image, mask in zip(sample_ids, images, masks)
        ]
        labels = np.asarray(labels)
        if self.spec.cue == "sticker":
            shows = np.stack([r[2] for r in rendered])
            same = shows & (labels == self.spec.sticker_class)[:, None]
            cue = np.where(shows, self.spec.sticker_class, -1)
        else:
            tied = np.asarray(self.tied_backgrounds())
            same = np.arange(self.spec.num_textures)[None, :] == tied[labels][:, None]
            # texture -> the class tied to it (-1 where none is, or several share it: the cue names no one class)
            shared = np.bincount(tied, minlength=self.spec.num_textures)
            owner = np.full(self.spec.num_textures, -1, np.int64)
            owner[tied] = np.arange(len(tied))
            owner[shared > 1] = -1
            cue = np.broadcast_to(owner, same.shape)
        images, alone = np.stack([r[0] for r in rendered]), np.stack([r[1] for r in rendered])
        return Twins(images, same, alone, np.zeros_like(masks), np.asarray(cue, np.int64))

    def factors(self, split: str, sample_ids: Sequence[str]) -> Factors:
        """The generator's factors (FACTORS) of `sample_ids`, each sample regenerated from its seed; the tertiles are
        those of the samples asked for (a scored split: all of it)."""
        if not sample_ids:
            return Factors(np.zeros(0, bool), {factor: np.zeros(0, bool) for factor in FACTORS})
        entry = self.splits[split]
        drawn = [
            sample_factors(
                self.spec,
                split,
                int(sample_id[len(split) + 1 :]),
                float(entry.get("rho", 0.0)),
                entry.get("kind", "standard"),
            )
            for sample_id in sample_ids
        ]
        column = {name: np.array([d[name] for d in drawn], np.float64) for name in drawn[0]}
        smaller, larger = _tertiles(column["scale"])
        shows = {
            "pose": _tertiles(column["rotation"])[1],
            "smaller": smaller,
            "larger": larger,
            "position": _tertiles(column["offset"])[1],
            "low_contrast": _tertiles(column["contrast"])[0],
            "background": column["away"] > 0,
        }
        return Factors(np.ones(len(drawn), bool), shows)

    def load_items(self, split: str, items: Sequence[Item], start: int) -> Iterator[Sample]:
        spec = self.splits[split]
        yield from generate(self.spec, split, len(items), float(spec["rho"]), start, spec.get("kind", "standard"))
