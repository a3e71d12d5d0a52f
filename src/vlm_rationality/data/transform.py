"""The eval transform, applied once in prepare to an image *and* its object mask together.

Resize the shorter side to S and centre-crop S×S (CLIP's evaluation transform) by default; `resize` R > S is the
ImageNet recipe (shorter side to R = 256, centre crop 224) that the official code uses for ImageNet and CUB. The
image is resized with bicubic interpolation (or bilinear, torchvision's default); the mask is rasterised at the
original resolution as 0/255 (or an adapter's soft map, e.g. CUB's segmentation), resized with nearest neighbour
(or bilinear) and kept where ≥ `mask_threshold`, so a box corner lands within one pixel of where the
transformed box would be. No later stage re-derives coordinates.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw


def to_rgb(image: Image.Image) -> Image.Image:
    """Grayscale, palette, CMYK and alpha images become plain RGB (alpha composited on black)."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


INTERPOLATIONS = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}


def resize_crop_box(
    width: int, height: int, size: int, resize: int | None = None
) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """The resized (w, h) with shorter side `resize` (default `size`), and the centred size×size crop box
    (left, top, right, bottom)."""
    resize = size if resize is None else resize
    if resize < size:
        raise ValueError(f"resize {resize} is smaller than the crop {size}")
    scale = resize / min(width, height)
    new_w, new_h = max(resize, round(width * scale)), max(resize, round(height * scale))
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return (new_w, new_h), (left, top, left + size, top + size)


def eval_transform(
    image: Image.Image,
    mask: np.ndarray,
    size: int,
    resize: int | None = None,
    interpolation: str = "bicubic",
    mask_interpolation: str = "nearest",
    mask_threshold: int = 128,
) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 [S, S, 3], bool [S, S]) from a PIL image and a mask of the image's (H, W): bool, or uint8 0–255."""
    image = to_rgb(image)
    if mask.shape != (image.height, image.width):
        raise ValueError(f"mask {mask.shape} does not match the image {(image.height, image.width)}")
    resized, crop = resize_crop_box(image.width, image.height, size, resize)
    out_image = image.resize(resized, INTERPOLATIONS[interpolation]).crop(crop)
    soft = mask.astype(np.uint8) * 255 if mask.dtype == bool else mask.astype(np.uint8)
    out_mask = Image.fromarray(soft).resize(resized, INTERPOLATIONS[mask_interpolation]).crop(crop)
    return np.asarray(out_image, dtype=np.uint8), np.asarray(out_mask) >= mask_threshold


def boxes_mask(boxes: list[tuple[float, float, float, float]], height: int, width: int) -> np.ndarray:
    """Union of pixel boxes (xmin, ymin, xmax, ymax), inclusive pixel coordinates as in VOC/ImageNet."""
    mask = np.zeros((height, width), dtype=bool)
    for xmin, ymin, xmax, ymax in boxes:
        x0, y0 = max(0, int(np.floor(xmin))), max(0, int(np.floor(ymin)))
        x1, y1 = min(width, int(np.floor(xmax)) + 1), min(height, int(np.floor(ymax)) + 1)
        mask[y0:y1, x0:x1] = True
    return mask


def polygon_mask(xs: np.ndarray, ys: np.ndarray, height: int, width: int) -> np.ndarray:
    """Filled polygon (pixel-centre coordinates) as a bool mask."""
    canvas = Image.new("L", (width, height), 0)
    ImageDraw.Draw(canvas).polygon(list(zip(np.asarray(xs, float).tolist(), np.asarray(ys, float).tolist())), fill=255)
    return np.asarray(canvas) > 0
