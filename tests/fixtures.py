"""Miniature datasets in each dataset's exact on-disk format, with objects at known places and bad input; and
prepared shards of generated samples (`prepared_shard`), as the prepare stage stores them.

Each builder returns the dataset root and what the tests need to know: the box of every good image (in the
original image's inclusive pixel coordinates) and how many items of each bad kind it planted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import scipy.io
from PIL import Image

from vlm_rationality.artefacts import write_prepared_shard
from vlm_rationality.data import Sample

BOX = (20, 15, 59, 44)  # xmin, ymin, xmax, ymax (inclusive) in a 100x75 image


def prepared_shard(path: Path, samples: Sequence[Sample], config_hash: str = "h", **options: Any) -> Path:
    """`samples` (e.g. of the synthetic generator) written as one prepared shard; `options` go to the writer
    (`masks` replaces the samples' own, e.g. to plant an empty one; `extra`, `split`, `class_names`, …)."""
    options.setdefault("masks", np.stack([s.mask for s in samples]))
    write_prepared_shard(
        path,
        sample_ids=[s.sample_id for s in samples],
        labels=np.array([s.label for s in samples]),
        images=np.stack([s.image for s in samples]),
        sources=[s.source for s in samples],
        config_hash=config_hash,
        **options,
    )
    return path


@dataclass
class Fixture:
    root: Path
    boxes: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)  # sample_id -> box
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)  # sample_id -> (width, height)
    bad: dict[str, int] = field(default_factory=dict)  # reason -> count


def photo(path: Path, box=BOX, size=(100, 75), seed=0, mode="RGB") -> None:
    """A noisy picture with a bright object filling `box`, saved in the format the suffix names."""
    rng = np.random.default_rng(seed)
    width, height = size
    pixels = rng.integers(0, 90, size=(height, width, 3), dtype=np.uint8)
    xmin, ymin, xmax, ymax = box
    pixels[max(ymin, 0) : ymax + 1, max(xmin, 0) : xmax + 1] = (240, 220, 40)
    image = Image.fromarray(pixels)
    image = image.convert(mode) if mode != "RGB" else image
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, quality=95) if path.suffix.lower() in (".jpg", ".jpeg") and mode in (
        "RGB",
        "L",
        "CMYK",
    ) else image.save(path)


def corrupt_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not an image" * 10)


def truncated_jpeg(path: Path) -> None:
    photo(path, seed=9)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def voc_xml(path: Path, boxes: list[tuple[str, tuple[int, int, int, int]]], size=(100, 75)) -> None:
    objects = "".join(
        f"<object><name>{name}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax>"
        f"<ymax>{b[3]}</ymax></bndbox></object>"
        for name, b in boxes
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"<annotation><size><width>{size[0]}</width><height>{size[1]}</height></size>{objects}</annotation>"
    )


def imagenet(root: Path) -> Fixture:
    root.mkdir(parents=True, exist_ok=True)
    fx = Fixture(root)
    synsets = ["n01440764", "n01443537"]
    (root / "LOC_synset_mapping.txt").write_text(
        "n01440764 tench, Tinca tinca\nn01443537 goldfish, Carassius auratus\n"
    )
    rows = ["ImageId,PredictionString"]
    for k, synset in enumerate(synsets):
        for j in range(2):
            photo(root / "train" / synset / f"{synset}_{j}.JPEG", seed=k * 10 + j)
        for j in range(2):
            image_id = f"ILSVRC2012_val_{k * 10 + j:08d}"
            size = (100, 75) if j == 0 else (60, 90)
            box = BOX if j == 0 else (10, 30, 40, 70)
            photo(root / "val" / synset / f"{image_id}.JPEG", box=box, size=size, seed=100 + k * 10 + j)
            other = synsets[1 - k]
            rows.append(
                f"{image_id},{synset} {' '.join(map(str, box))} {other} 0 0 5 5"
            )  # the other class's box is ignored
            fx.boxes[f"val/{synset}/{image_id}.JPEG"] = box
            fx.sizes[f"val/{synset}/{image_id}.JPEG"] = size
    bad = root / "val" / synsets[0]
    corrupt_file(bad / "ILSVRC2012_val_00000090.JPEG")
    truncated_jpeg(bad / "ILSVRC2012_val_00000091.JPEG")
    photo(bad / "ILSVRC2012_val_00000092.JPEG")  # not in the CSV
    photo(bad / "ILSVRC2012_val_00000093.JPEG")
    rows.append(f"ILSVRC2012_val_00000093,{synsets[0]} 300 300 400 400")  # box outside the 100x75 image
    photo(bad / "ILSVRC2012_val_00000094.JPEG")
    rows.append(f"ILSVRC2012_val_00000094,{synsets[0]} 1 2 3")  # malformed
    (root / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")
    for row in rows[1:]:  # the same boxes as ILSVRC val XML files, the other format the adapter reads
        image_id, boxes = row.split(",")
        fields = boxes.split()
        if len(fields) % 5 == 0:
            objects = [(fields[i], tuple(int(v) for v in fields[i + 1 : i + 5])) for i in range(0, len(fields), 5)]
            voc_xml(root / "val_xml" / f"{image_id}.xml", objects)
    (root / "val_xml" / "ILSVRC2012_val_00000094.xml").write_text("<annotation><object>")  # malformed
    fx.bad = {"unreadable_image": 2, "missing_annotation": 1, "box_outside_image": 1, "malformed_annotation": 1}
    return fx


def shifted_imagenet(root: Path, layout: str, classes: Sequence[str | int]) -> Path:
    """A shifted test set in its published layout: ImageNet-V2's class-index folders (`layout` v2) or the wnid
    folders of ImageNet-R/-A/-Sketch; two images per class, one of them a PNG (the sets mix formats)."""
    for k, name in enumerate(classes):
        for j, suffix in enumerate((".jpeg" if layout == "v2" else ".jpg", ".png")):
            photo(root / str(name) / f"{layout}_{k}_{j}{suffix}", seed=500 + 10 * k + j)
    return root


def imagenet_c(imagenet_root: Path, root: Path, shifts: list[str]) -> Path:
    """The published ImageNet-C layout, made as Hendrycks & Dietterich made it: every validation image (the
    unreadable ones stand in as a blank picture) resized to 256 on its shorter side, centre-cropped to 224, corrupted
    and saved as JPEG under `<root>/<corruption>/<severity>/<wnid>/<image>.JPEG`."""
    from vlm_rationality.data.corruptions import apply_shift, parse_shift

    for path in sorted((imagenet_root / "val").glob("*/*.JPEG")):
        try:
            with Image.open(path) as handle:
                image = handle.convert("RGB")
        except OSError:
            image = Image.new("RGB", (100, 75))
        scale = 256 / min(image.size)
        image = image.resize(
            (max(256, round(image.width * scale)), max(256, round(image.height * scale))), Image.Resampling.BILINEAR
        )
        left, top = (image.width - 224) // 2, (image.height - 224) // 2
        crop = np.asarray(image.crop((left, top, left + 224, top + 224)))
        for shift in shifts:
            corruption, severity = parse_shift(shift)
            out = root / corruption / str(severity) / path.parent.name / path.name
            out.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(apply_shift(crop[None], [path.name], shift)[0]).save(out, "JPEG", quality=85)
    return root


def caltech101(root: Path) -> Fixture:
    root.mkdir(parents=True, exist_ok=True)
    fx = Fixture(root)
    folders = {"Faces": "Faces_2", "airplanes": "Airplanes_Side_2", "ant": "ant"}
    for k, (folder, annotation_folder) in enumerate(folders.items()):
        for j in range(1, 5):
            sample_id = f"101_ObjectCategories/{folder}/image_{j:04d}.jpg"
            photo(root / sample_id, seed=k * 10 + j)
            fx.boxes[sample_id], fx.sizes[sample_id] = BOX, (100, 75)
            xmin, ymin, xmax, ymax = BOX
            # 1-based MATLAB coordinates; the contour is relative to the box's top-left corner.
            box_coord = np.array([[ymin + 1, ymax + 1, xmin + 1, xmax + 1]], dtype=float)
            contour = np.array(
                [[1, xmax - xmin + 1, xmax - xmin + 1, 1], [1, 1, ymax - ymin + 1, ymax - ymin + 1]], float
            )
            path = root / "Annotations" / annotation_folder / f"annotation_{j:04d}.mat"
            path.parent.mkdir(parents=True, exist_ok=True)
            scipy.io.savemat(path, {"box_coord": box_coord, "obj_contour": contour})
    photo(root / "101_ObjectCategories" / "BACKGROUND_Google" / "image_0001.jpg")
    (root / "Annotations" / "ant" / "annotation_0004.mat").unlink()  # missing annotation
    scipy.io.savemat(
        root / "Annotations" / "ant" / "annotation_0003.mat", {"box_coord": np.zeros((1, 4))}
    )  # no contour
    for sample_id in ("101_ObjectCategories/ant/image_0004.jpg", "101_ObjectCategories/ant/image_0003.jpg"):
        fx.boxes.pop(sample_id)
    fx.bad = {"missing_annotation": 1, "malformed_annotation": 1}
    return fx


def _cell(strings: list[str]) -> np.ndarray:
    cell = np.empty((len(strings), 1), dtype=object)
    for i, s in enumerate(strings):
        cell[i, 0] = np.array([s])
    return cell


def stanford_dogs(root: Path) -> Fixture:
    root.mkdir(parents=True, exist_ok=True)
    fx = Fixture(root)
    breeds = ["n02085620-Chihuahua", "n02085782-Japanese_spaniel"]
    lists: dict[str, list[tuple[str, int]]] = {"train": [], "test": []}
    for k, breed in enumerate(breeds):
        for j in range(3):
            stem = f"{breed.split('-')[0]}_{j}"
            relative = f"{breed}/{stem}.jpg"
            photo(root / "Images" / relative, seed=k * 10 + j)
            voc_xml(root / "Annotation" / breed / stem, [("dog", BOX)])
            split = "train" if j == 0 else "test"
            lists[split].append((relative, k + 1))
            fx.boxes[f"Images/{relative}"], fx.sizes[f"Images/{relative}"] = BOX, (100, 75)
    bad = f"{breeds[1]}/n02085782_9.jpg"
    photo(root / "Images" / bad, seed=99)
    (root / "Annotation" / breeds[1] / "n02085782_9").write_text("<annotation><object><bndbox>")  # malformed XML
    lists["test"].append((bad, 2))
    for split, entries in lists.items():
        scipy.io.savemat(
            root / f"{split}_list.mat",
            {
                "file_list": _cell([e[0] for e in entries]),
                "annotation_list": _cell([e[0].rsplit(".", 1)[0] for e in entries]),
                "labels": np.array([[e[1]] for e in entries], dtype=float),
            },
        )
    fx.bad = {"malformed_annotation": 1}
    return fx


def cub(root: Path) -> Fixture:
    root.mkdir(parents=True, exist_ok=True)
    fx = Fixture(root)
    classes = ["001.Black_footed_Albatross", "002.Laysan_Albatross"]
    images, labels, split, bboxes = [], [], [], []
    modes = ["RGB", "L", "RGBA", "CMYK"]
    index = 0
    for k, cls in enumerate(classes):
        for j in range(4):
            index += 1
            name = f"{cls}/{cls.split('.')[1]}_{j:04d}.jpg"
            mode = modes[j]
            suffix_path = root / "images" / name
            photo(suffix_path.with_suffix(".png") if mode == "RGBA" else suffix_path, seed=index, mode=mode)
            if mode == "RGBA":
                suffix_path.with_suffix(".png").rename(suffix_path)  # CUB's files are .jpg; PIL reads by content
            segmentation = np.zeros((75, 100), dtype=np.uint8)
            xmin, ymin, xmax, ymax = BOX
            segmentation[ymin : ymax + 1, xmin : xmax + 1] = 200
            segmentation[ymin : ymax + 1, xmax + 1 : xmax + 6] = 100  # soft edge below the default threshold
            seg_path = root / "segmentations" / name.replace(".jpg", ".png")
            seg_path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(segmentation).save(seg_path)
            images.append(f"{index} {name}")
            labels.append(f"{index} {k + 1}")
            split.append(f"{index} {1 if j == 0 else 0}")
            bboxes.append(f"{index} {xmin}.0 {ymin}.0 {xmax - xmin + 1}.0 {ymax - ymin + 1}.0")
            if j:
                fx.boxes[f"images/{name}"], fx.sizes[f"images/{name}"] = BOX, (100, 75)
    empty = root / "segmentations" / images[-1].split(" ", 1)[1].replace(".jpg", ".png")
    Image.fromarray(np.zeros((75, 100), dtype=np.uint8)).save(empty)  # empty mask
    fx.boxes.pop("images/" + images[-1].split(" ", 1)[1])
    for name, lines in {
        "images.txt": images,
        "image_class_labels.txt": labels,
        "train_test_split.txt": split,
        "bounding_boxes.txt": bboxes,
        "classes.txt": [f"{i + 1} {c}" for i, c in enumerate(classes)],
    }.items():
        (root / name).write_text("\n".join(lines) + "\n")
    fx.bad = {"empty_mask": 1}
    return fx


def wordpiece_vocab(directory: Path, size: int) -> Path:
    """A BERT WordPiece vocab.txt of exactly `size` tokens: the specials, every word of the synthetic captions,
    then [unused] fillers, as bert-base-uncased pads its own. The directory is what a model's `tokenizer` names."""
    from vlm_rationality.data.synthetic import OBJECT_COLOURS, SHAPES, TEXTURES

    words = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        "a",
        "an",
        "photo",
        "of",
        "on",
        *SHAPES,
        *TEXTURES,
        *OBJECT_COLOURS,
    ]
    if size < len(words):
        raise ValueError(f"a vocab of {size} tokens cannot hold the {len(words)} caption words")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("\n".join(words + [f"[unused{i}]" for i in range(size - len(words))]) + "\n")
    return directory
