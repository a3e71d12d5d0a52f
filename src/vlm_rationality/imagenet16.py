"""The cue-conflict stimuli's vocabulary (Geirhos et al.): 16 entry-level categories, each a set of ImageNet-1k
classes (`imagenet16.json`), and the stimuli's file names. Read by the stimuli's dataset adapter (`data/folders.py`)
and by the shape-bias metric (`metrics/shape_bias.py`), so it sits below both.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

# The stimuli's file names: `<shape>/<shape><i>-<texture><j>.png`, e.g. `cat/cat7-elephant1.png`.
STIMULUS = re.compile(r"^(?P<shape>[a-z]+)\d+-(?P<texture>[a-z]+)\d+\.png$")


@cache
def imagenet16() -> dict[str, list[int]]:
    """Category -> its ImageNet-1k class indices, categories in sorted order (the stimuli's folder order)."""
    data = json.loads((Path(__file__).with_name("imagenet16.json")).read_text())["categories"]
    return {name: data[name] for name in sorted(data)}


def parse_stimulus(name: str) -> tuple[str, str]:
    """(shape, texture) of a cue-conflict file name; a name of another form fails, naming it."""
    match = STIMULUS.match(name)
    if match is None:
        raise ValueError(f"{name}: not a cue-conflict stimulus name (<shape><i>-<texture><j>.png)")
    return match["shape"], match["texture"]
