"""Region embeddings from the model under study: each region cropped, resized to the model's input and encoded.

RaVL embeds regions of CLIP ResNets with RoIAlign on the feature map; a ViT has no such map at the input's
geometry, so (as the issue and RaVL's ViT variant do) a region is cropped and resized instead. The embedding is what
the method's head reads (through CLIP-Adapter's adapter, if any), L2-normalised; the class "text" embedding of a
trained head is its weight row, so every method is scored the same way: softmax(cosine / 0.07).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from vlm_rationality.discover.regions import Box
from vlm_rationality.models.heads import ImageClassifier


def crops(image: np.ndarray, boxes: Sequence[Box]) -> np.ndarray:
    """uint8 [H, W, 3] -> uint8 [len(boxes), H, W, 3]: each box cut out and resized (bicubic) to the image's size."""
    height, width = image.shape[:2]
    source = Image.fromarray(image)
    return np.stack([np.asarray(source.crop(box).resize((width, height), Image.BICUBIC)) for box in boxes])


@torch.no_grad()
def embed(classifier: ImageClassifier, images: np.ndarray, device: torch.device, batch_size: int) -> np.ndarray:
    """uint8 [N, S, S, 3] -> float32 [N, D]: unit-norm embeddings as the method's head reads them."""
    out = []
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(images[start : start + batch_size]).to(device)
        features = classifier.features(classifier.model.encode_image(classifier.model.preprocess(batch)))
        out.append(F.normalize(features.float(), dim=-1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, classifier.head.in_features), np.float32)


def class_embeddings(classifier: ImageClassifier) -> np.ndarray:
    """[C, D]: the head's rows, L2-normalised (for a prompt head, the class-prompt text embeddings)."""
    return F.normalize(classifier.head.weight.detach().float(), dim=-1).cpu().numpy()
