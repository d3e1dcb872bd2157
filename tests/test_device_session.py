"""The GPU session script, run on a CPU with the tiny preset: it trains, exports and evaluates under $OUT."""
import json
import os
import subprocess
import sys

from conftest import ROOT, write_shards


def test_device_session_script_trains_exports_and_evaluates(tmp_path):
    data = write_shards(tmp_path / "d", objects=40, pairs=1, per_shard=10)
    env = dict(os.environ, OUT=str(tmp_path / "out"), PY=sys.executable, PRESET="tiny", INIT="", DATA=str(data),
               MINUTES="0.05", BATCH="2", WORKERS="0", EVAL_PAIRS="2", OMP_NUM_THREADS="1")
    os.makedirs(env["OUT"])
    done = subprocess.run(["bash", "scripts/device_session.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = tmp_path / "out"
    assert (out / "weights" / "model.safetensors").stat().st_size > 0
    report = json.loads((out / "eval.json").read_text())
    assert report["n"] == 2 and "psnr" in report["model"]
    assert "train: tiny preset" in (out / "train.log").read_text()
