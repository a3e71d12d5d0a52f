"""Distribution shifts: the 15 ImageNet-C corruptions × severities 1–5, applied on the fly.

A shift is `clean` or `{corruption}-{severity}`. Corruptions are applied to the prepared S×S images (which is
how ImageNet-C itself was made), through imagecorruptions-imaug (maintained, works on numpy 2). Each sample
gets its own seed from (shift, sample_id), so a shift is the same whatever the batch or shard split. Masks
are unchanged: the object stays where it was. Shards prepared from the published ImageNet-C folders
(imagenet_c.py) are already under their shift; `shift_to_apply` tells a stage which case it has.
"""

from __future__ import annotations

import os
import warnings
import zlib
from typing import Sequence

import numpy as np

from vlm_rationality.artefacts import PreparedShard

CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)
SEVERITIES = (1, 2, 3, 4, 5)


def parse_shift(shift: str) -> tuple[str, int] | None:
    """None for `clean`, else (corruption, severity); a bad name fails listing the valid ones."""
    if shift == "clean":
        return None
    name, _, severity = shift.rpartition("-")
    if name not in CORRUPTIONS or not severity.isdigit() or int(severity) not in SEVERITIES:
        raise ValueError(
            f"shift {shift!r}: use 'clean' or '<corruption>-<1..5>' with a corruption among {', '.join(CORRUPTIONS)}"
        )
    return name, int(severity)


def all_shifts() -> list[str]:
    return ["clean"] + [f"{name}-{severity}" for name in CORRUPTIONS for severity in SEVERITIES]


def shift_to_apply(paths: Sequence[str | os.PathLike], shift: str) -> str:
    """The shift a stage must still apply to `paths` to see them under `shift`: none (`clean`) where the shards were
    prepared under it (pre-rendered ImageNet-C), all of it where they are clean; anything else is a wrong input."""
    prepared = {os.fspath(p): PreparedShard(p).meta.get("shift", "clean") for p in paths}
    wrong = [p for p, s in prepared.items() if s not in ("clean", shift)]
    if wrong or len(set(prepared.values())) > 1:
        raise ValueError(
            f"asked for shift {shift!r} of shards prepared under {sorted(set(prepared.values()))}: "
            f"{', '.join(wrong or prepared)}; a job's shards must all be clean or all be that shift"
        )
    return "clean" if shift in prepared.values() else shift


def apply_shift(images: np.ndarray, sample_ids: Sequence[str], shift: str) -> np.ndarray:
    """Corrupt uint8 [B, H, W, 3] images, each seeded by (shift, sample_id)."""
    parsed = parse_shift(shift)
    if parsed is None:
        return images
    from imagecorruptions import corrupt  # heavy (numba, OpenCV, scikit-image): only when a shift is asked for

    name, severity = parsed
    out = np.empty_like(images)
    state = np.random.get_state()  # imagecorruptions draws from numpy's global generator
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for i, (image, sample_id) in enumerate(zip(images, sample_ids)):
                np.random.seed(zlib.crc32(f"{shift}/{sample_id}".encode()))
                corrupted = np.asarray(corrupt(image, corruption_name=name, severity=severity))
                if corrupted.shape != image.shape:
                    raise RuntimeError(f"{shift} changed the image shape {image.shape} -> {corrupted.shape}")
                out[i] = np.clip(corrupted, 0, 255).astype(np.uint8)
    finally:
        np.random.set_state(state)
    return out
