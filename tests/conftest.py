"""Shared fixtures. Tests never touch the network: hub libraries are set offline and any IP connection other than
to this machine fails."""

from __future__ import annotations

import os
import socket

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

_connect = socket.socket.connect


LOOPBACK = ("127.0.0.1", "::1", "localhost")  # a local process, e.g. chromedriver for the report test


def _no_network(self: socket.socket, address, *args, **kwargs):
    if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in LOOPBACK:
        raise RuntimeError(f"tests must not open network connections (tried {address!r})")
    return _connect(self, address, *args, **kwargs)


socket.socket.connect = _no_network  # type: ignore[method-assign]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test on the shared workflow run is slow (the run takes minutes): `pytest -m "not slow"` is the fast lane."""
    for item in items:
        if "local_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def tiny_model():
    from vlm_rationality.models import build_model

    torch.manual_seed(0)
    return build_model({"adapter": "open_clip", "arch": "tiny-vit-32"}).eval()


@pytest.fixture(scope="session")
def prompts() -> list[str]:
    from vlm_rationality.data.synthetic import SyntheticSpec, class_prompts

    return class_prompts(SyntheticSpec(image_size=32))


@pytest.fixture(scope="session")
def tiny_vocab(tmp_path_factory):
    """The 64-token WordPiece vocabulary of the tiny ALBEF/BLIP configs."""
    from tests.fixtures import wordpiece_vocab

    return wordpiece_vocab(tmp_path_factory.mktemp("vocab"), 64)


@pytest.fixture(scope="session", params=["open_clip", "albef", "blip"])
def any_tiny_model(request, tiny_vocab):
    """One tiny random model of each adapter, for the tests every VLM must pass."""
    from vlm_rationality.models import build_model

    if request.param == "open_clip":
        return request.getfixturevalue("tiny_model")
    return build_model({"adapter": request.param, "arch": f"tiny-{request.param}", "tokenizer": str(tiny_vocab)}).eval()


@pytest.fixture(scope="session")
def local_run(tmp_path_factory):
    """The workflow on .test/config.yaml with `snakemake --cores 2`; tests that change it restore it."""
    from tests.snakemake_runs import TEST_CONFIG, snakemake

    workdir = tmp_path_factory.mktemp("workflow")
    snakemake(workdir, TEST_CONFIG)
    return workdir
