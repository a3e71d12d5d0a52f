"""The eval transform, applied once in prepare to an image *and* its object mask together.

Resize the shorter side to S and centre-crop S×S (CLIP's evaluation transform). The image is resized with
bicubic interpolation; the mask is rasterised at the original resolution and resized with nearest
neighbour, so a box corner lands within one pixel of where the transformed box would be. No later stage
re-derives coordinates.
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


def resize_crop_box(width: int, height: int, size: int) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """The resized (w, h) with shorter side `size`, and the centred crop box (left, top, right, bottom)."""
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return (new_w, new_h), (left, top, left + size, top + size)


def eval_transform(image: Image.Image, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 [S, S, 3], bool [S, S]) from a PIL image and a bool mask of the image's (H, W)."""
    image = to_rgb(image)
    if mask.shape != (image.height, image.width):
        raise ValueError(f"mask {mask.shape} does not match the image {(image.height, image.width)}")
    resized, crop = resize_crop_box(image.width, image.height, size)
    out_image = image.resize(resized, Image.Resampling.BICUBIC).crop(crop)
    out_mask = Image.fromarray(mask.astype(np.uint8) * 255).resize(resized, Image.Resampling.NEAREST).crop(crop)
    return np.asarray(out_image, dtype=np.uint8), np.asarray(out_mask) > 127


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
