"""Jobs on a machine with GPUs: each takes its own GPU slot and holds it while it runs."""

from __future__ import annotations

import pytest
import torch


def test_gpu_slots_are_taken_one_job_each_and_freed_when_the_job_ends(tmp_path):
    """The lock files behind `gpu_slot` (no GPU needed: the GPUs are named by UUID strings): two GPUs, one slot
    each, a third job waits (None) until a job's lock is released, and a second slot per GPU takes a second job."""
    from vlm_rationality.device import take_slot

    gpus = {0: "GPU-aaaa", 1: "GPU-bbbb"}
    first, second = take_slot(tmp_path, gpus, 1), take_slot(tmp_path, gpus, 1)
    assert (first[0], second[0]) == (0, 1)
    assert take_slot(tmp_path, gpus, 1) is None
    second[1].close()
    third = take_slot(tmp_path, gpus, 1)
    assert third[0] == 1
    assert take_slot(tmp_path, gpus, 2)[0] == 0  # two jobs per GPU: GPU 0's second slot


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_concurrent_jobs_on_one_gpu_run_one_after_the_other(tmp_path, monkeypatch):
    import threading
    import time

    from vlm_rationality.device import gpu_slot
    from vlm_rationality.environment import GPU_LOCKS as LOCKS

    monkeypatch.setenv(LOCKS, str(tmp_path))
    held = []

    def job():
        with gpu_slot("cuda:0", poll_seconds=0.05) as device:
            held.append((device, time.monotonic()))
            time.sleep(0.5)
            held.append((device, time.monotonic()))

    threads = [threading.Thread(target=job) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [d for d, _ in held] == ["cuda:0"] * 4 and held[2][1] >= held[1][1]
