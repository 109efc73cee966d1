"""A real 2-process run on 127.0.0.1 (2 processes x 2 CPU devices) matches the single-process 4-device run."""
import os
import subprocess

import numpy as np
from helpers_train import ROOT, TOY, final_params, free_port, launch_cmd, launch_env, toy_config

from seqjax import train

OVERRIDES = {"train.steps": 4, "train.checkpoint_every": 2, "train.plots": False}


def test_two_processes_match_one_process(tmp_path):
    single = str(tmp_path / "single")
    train.train_and_evaluate(toy_config(**OVERRIDES), single)

    workdir = str(tmp_path / "multi")
    port = free_port()
    args = [f"--config={TOY}:smoke", f"--workdir={workdir}",
            *(f"--config.{k}={v}" for k, v in OVERRIDES.items()),
            f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2"]
    procs = [subprocess.Popen(launch_cmd(*args, f"--process_id={i}"), cwd=ROOT, env=launch_env(devices=2),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=150)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0, out[-3000:]
    assert "done: completed at step 4" in outs[0]
    # Both processes wrote their part of the same checkpoints; process 0 wrote the run files.
    assert sorted(d for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit()) == ["2", "4"]
    assert os.path.exists(os.path.join(workdir, "summary.json"))
    a, b = final_params(workdir), final_params(single)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6, err_msg=k)
