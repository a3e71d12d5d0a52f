"""Job resources follow the config: model, split and group sizes, device, retries."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.snakemake_runs import REPO
from vlm_rationality.plan.sizing import JobSize, gpu_model, job_resources, training_images_held

SETTINGS = {
    "mem_mb": 4000,
    "min_runtime": 10,
    "runtime_margin": 2.0,
    "images_per_second": {"prepare": 100, "train": 300, "explain": 300, "corrupt": 10},
}


def resources(device: str, stage: str, attempt: int = 1, **size) -> dict[str, int]:
    """A job's resources under SETTINGS, its images 224 px unless `size` says."""
    return job_resources(SETTINGS, device, stage, JobSize(**{"image_size": 224, **size}), attempt)


def test_memory_grows_with_the_model_the_split_and_each_retry():
    small = resources("cuda", "finetune", images=10_000, parameters=10**6)
    big_model = resources("cuda", "finetune", images=10_000, parameters=150 * 10**6)
    big_split = resources("cuda", "finetune", images=100_000, parameters=10**6)
    retry = resources("cuda", "finetune", images=10_000, parameters=10**6, attempt=2)
    # 10,000 images of 224x224x3 held at 1.25x, and 16 bytes a parameter, above the 4,000 MB floor
    assert small["mem_mb"] == 4000 + -(-(1.25 * 10_000 * 224 * 224 * 3 + 16 * 10**6) // 2**20)
    assert big_model["mem_mb"] - small["mem_mb"] == round(16 * 149 * 10**6 / 2**20)
    assert big_split["mem_mb"] > 10 * (small["mem_mb"] - 4000)
    assert retry["mem_mb"] == 2 * small["mem_mb"]


def test_a_streamed_split_holds_three_windows_of_shards_whatever_its_size():
    streaming = {"in_memory_mb": 16000, "window": 8}
    assert training_images_held(50_000, 224, 1000, streaming) == 50_000  # 7.0 GiB: held
    assert training_images_held(1_281_167, 224, 1000, streaming) == 24_000  # ImageNet train (180 GiB): streamed
    imagenet = resources("cuda", "finetune", images=1_281_167, held_images=24_000)
    assert imagenet["mem_mb"] == resources("cuda", "finetune", images=24_000)["mem_mb"]
    assert imagenet["runtime"] > resources("cuda", "finetune", images=24_000)["runtime"]  # reads all


def test_runtime_follows_images_epochs_and_corruptions():
    one = resources("cuda", "finetune", images=36_000, passes=1)
    ten = resources("cuda", "finetune", images=36_000, passes=10)
    assert one["runtime"] == 10 + 2 * 36_000 / 300 / 60 and ten["runtime"] == 10 + 10 * 4
    clean = resources("cuda", "explain", images=6_000)
    corrupted = resources("cuda", "explain", images=6_000, corrupted=True)
    assert (clean["runtime"], corrupted["runtime"]) == (
        10 + 1,
        10 + 21,
    )  # + 600 s of corruptions at 10 img/s, x2 margin


def test_gpus_only_where_a_model_runs_on_a_gpu():
    assert resources("auto", "finetune", images=1, gpus=4)["gpu"] == 4
    # CPUs are the rule's threads (the SLURM plugin's fallback), so a one-thread prepare job reserves one CPU
    assert "cpus_per_task" not in resources("auto", "prepare", images=1)
    assert resources("cpu", "explain", images=1)["gpu"] == 0
    assert resources("cuda", "prepare", images=1)["gpu"] == 0
    assert resources("cuda", "score", images=1)["gpu"] == 0


def test_a_gpu_model_is_asked_for_by_gpu_jobs_only():
    settings = {**SETTINGS, "gpu_model": "h100"}
    assert gpu_model(settings, "auto", "explain") == gpu_model(settings, "cuda", "finetune") == "h100"
    assert gpu_model(settings, "auto", "prepare") == gpu_model(settings, "cpu", "explain") == ""
    assert gpu_model(SETTINGS, "auto", "explain") == ""


_PEAK = """
import re, sys, torch
from pathlib import Path
from vlm_rationality.explain.heatmaps import HeatmapSettings
from vlm_rationality.models import build_classifier, build_model
torch.set_num_threads(2)
batch = int(sys.argv[1])
classifier = build_classifier(build_model({"adapter": "open_clip", "arch": "ViT-B-32"}), "prompt", ["a", "b"]).eval()
images = torch.randint(0, 255, (batch, 224, 224, 3), dtype=torch.uint8)
Path("/proc/self/clear_refs").write_text("5")  # the peak from here on: the explanation's, not the imports'
HeatmapSettings(batch_size=batch, method="chefer").build()(classifier, classifier.model.preprocess(images),
                                                            torch.zeros(batch, dtype=torch.long))
print(int(re.search(r"VmHWM:\\s+(\\d+)", Path("/proc/self/status").read_text()).group(1)) * 1024)
"""


def test_an_explain_jobs_memory_covers_its_batch_as_measured_on_the_cpu():
    """The per-image bytes the explain jobs are sized with, against the peak host memory of real explain batches
    of ViT-B/32 at 224 (randomly initialised: the same shapes as the pretrained model)."""
    import subprocess
    import sys

    from vlm_rationality.plan.sizing import explain_batch_bytes, explain_bytes_per_image

    peaks = [
        int(
            subprocess.run(
                [sys.executable, "-c", _PEAK, str(batch)], capture_output=True, text=True, check=True
            ).stdout.split()[-1]
        )
        for batch in (2, 8)
    ]
    measured = (peaks[1] - peaks[0]) / 6
    sized = explain_bytes_per_image({"adapter": "open_clip", "arch": "ViT-B-32"})
    assert 0.7 < sized / measured < 1.6, (sized, measured)
    per_image = explain_bytes_per_image({"adapter": "open_clip", "arch": "ViT-B-16"})
    cpu = resources(
        "cpu",
        "explain",
        images=3_000,
        parameters=150_000_000,
        batch_bytes=explain_batch_bytes(64, "cpu", per_image),
    )
    assert cpu["mem_mb"] > 12_000  # ViT-B/16 at batch 64 on the CPU: ~11 GB of activations besides the model
    assert explain_batch_bytes(64, "cuda", per_image) == 0  # on a GPU the batch is in its memory, not the host's


def test_one_table_sizes_every_stage_s_job_and_agrees_with_the_plan():
    from types import SimpleNamespace

    import yaml

    from tests.snakemake_runs import REPO, SCHEMA
    from vlm_rationality.plan.config import check_config
    from vlm_rationality.plan.cost import plan, split_sizes
    from vlm_rationality.plan.sizing import job_size

    config = yaml.safe_load((REPO / "config" / "twins.yaml").read_text())
    config = {**yaml.safe_load((REPO / "config.yaml").read_text()), **config}
    check_config(config, SCHEMA)
    sizes = split_sizes(config)

    def size(stage, **wildcards):
        return job_size(config, stage, SimpleNamespace(**wildcards), lambda d, s: sizes[d, s])

    ft = size("finetune", dataset="synthetic-rho0.9", model="tiny-clip", method="ft")
    assert (ft.images, ft.image_size, ft.passes, ft.gpus) == (2000, 64, 6, 1) and ft.parameters > 0
    assert size("pretrain", model="tiny-clip").passes == 12
    twins = size("twins", dataset="synthetic-rho0", model="tiny-clip", method="zs", group="0000-0002")
    assert (twins.images, twins.passes) == (3000, config["twins"]["backgrounds"] + 2)
    assert size("prepare", dataset="synthetic-rho0").images == 1000 and size("items").images == 0
    # the plan prices the same images: summed over the jobs the workflow runs, the table gives the plan's figures
    stages = {stage.name: stage for stage in plan(config)}
    trained = [m for m in config["methods"] if m != "zs"]
    pushed = sum(
        (s := size("finetune", dataset=d, model="tiny-clip", method=m)).images * s.passes
        for d in config["datasets"]
        for m in trained
    )
    assert pushed == stages["finetune"].images
    groups = [f"{a:04d}-{b:04d}" for a, b in [(0, 2)]]
    twins_images = sum(
        (s := size("twins", dataset=d, model="tiny-clip", method=m, group=g)).images * s.passes
        for d in config["datasets"]
        for m in config["methods"]
        for g in groups
    )
    assert twins_images == stages["twins"].images


def test_plan_prices_the_paper_grid_before_its_data_are_fetched_and_says_what_it_assumed(tmp_path):
    def plan(config: Path) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "vlm_rationality", "plan", "--configfile", str(config)]
        return subprocess.run(command, capture_output=True, text=True, cwd=REPO)

    priced = plan(REPO / "config" / "paper.yaml")  # its roots and ALBEF/BLIP weights are not on this machine
    assert priced.returncode == 0, priced.stderr
    assert "datasets.imagenet.splits.train: priced at 1,281,167 items (ILSVRC-2012" in priced.stdout
    assert "datasets.cub.splits.test: priced at 5,794 items" in priced.stdout
    assert "datasets.stanford_dogs: priced with 120 classes, as published" in priced.stdout
    assert (
        "- models.albef-vit-b16: pretrained: albef checkpoint '/data/weights/ALBEF.pth' does not exist" in priced.stdout
    )
    jobs = {row.split("|")[1].strip(): row.split("|")[2].strip() for row in priced.stdout.splitlines() if "| " in row}
    assert jobs["finetune"] == "48"  # 4 datasets x 4 models x 3 trained methods, as when the data are there
    broken = tmp_path / "broken.yaml"
    broken.write_text((REPO / "config.yaml").read_text() + "\nheatmapz: {}\n")
    refused = plan(broken)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.startswith("config error:\nheatmapz: unknown setting; did you mean heatmaps?")


@pytest.mark.parametrize("study", ["twins", "robustness", "resolution"])
def test_the_plan_is_the_sum_of_what_the_workflow_s_jobs_ask_for(tmp_path, study):
    """Per model stage, `plan`'s jobs and requested hours equal the count and summed runtime of the rules' jobs in
    a real dry run of the same config."""
    import re

    import yaml

    from tests.snakemake_runs import SCHEMA, snakemake
    from vlm_rationality.plan.config import check_config
    from vlm_rationality.plan.cost import plan

    config = {**yaml.safe_load((REPO / "config.yaml").read_text())}
    config.update(yaml.safe_load((REPO / "config" / f"{study}.yaml").read_text()))
    result = snakemake(tmp_path, config, "--dry-run")
    dry = result.stdout + result.stderr
    check_config(config, SCHEMA)
    priced = plan(config)
    asked: dict[str, list[int]] = {stage.name: [] for stage in priced}
    for rule, block in re.findall(r"^rule (\w+):\n((?:    .*\n)+)", dry, re.M):
        stage = {"pretrain_base": "pretrain", "prepare_shift": "prepare"}.get(rule, rule)
        if stage in asked:
            asked[stage].append(int(re.search(r"\bruntime=(\d+)", block).group(1)))
    assert len(priced) >= 5
    for stage in priced:
        assert (stage.name, stage.jobs) == (stage.name, len(asked[stage.name]))
        assert stage.requested_hours == pytest.approx(sum(asked[stage.name]) / 60, rel=1e-12), stage.name


def test_every_stage_names_a_sizing_function_that_exists_and_every_model_stage_names_one():
    from vlm_rationality.plan import sizing
    from vlm_rationality.stages import rule_stages

    declared = rule_stages()
    assert {"explain", "finetune", "pretrain", "predict", "twins", "discover", "assign_regions"} <= set(declared)
    for rule, stage in declared.items():
        assert stage.size is None or callable(getattr(sizing, stage.size, None)), (rule, stage.size)
        assert not stage.gpu or stage.size, f"{rule}: a model stage sized as a table's rows"
