"""Render jobs end to end: real rendering into shards, determinism, rank split, kill and resume, stuck workers."""
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from render.commands import render_procedural
from render.jobs import rank_of, resolve_rank, run_render_job
from render.views import ObjectSpec, RenderSettings, render_object
from render.procedural import make_object, procedural_uid
from conftest import read_shards

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(size=32, pairs_per_object=2, workers=1)


def test_procedural_objects_are_deterministic_per_seed_and_index():
    a, b, c = make_object(4, 2), make_object(4, 2), make_object(5, 2)
    assert len(a) >= 1 and all(np.array_equal(p.mesh.vertices, q.mesh.vertices) for p, q in zip(a, b))
    assert len(a) != len(c) or not all(np.array_equal(p.mesh.vertices, q.mesh.vertices) for p, q in zip(a, c))
    textured = [(p, q) for p, q in zip(a, b) if p.mesh.visual.kind == "texture"]
    assert all(np.array_equal(np.asarray(p.mesh.visual.material.baseColorTexture),
                              np.asarray(q.mesh.visual.material.baseColorTexture)) for p, q in textured)


def test_render_object_is_deterministic_and_rejects_empty_views():
    from render.renderer import Renderer
    renderer = Renderer(32)
    spec = ObjectSpec(procedural_uid(1, 0), "procedural", make_object, (1, 0))
    first = render_object(renderer, spec, RenderSettings(size=32, pairs_per_object=2, seed=1))
    again = render_object(renderer, spec, RenderSettings(size=32, pairs_per_object=2, seed=1))
    other = render_object(renderer, spec, RenderSettings(size=32, pairs_per_object=2, seed=2))
    assert [s["src.png"] for s in first] == [s["src.png"] for s in again]
    assert [s["src.png"] for s in first] != [s["src.png"] for s in other]
    meta = json.loads(first[0]["json"])
    assert (meta["uid"], meta["source"], meta["fov_deg"], meta["size"]) == (spec.uid, "procedural", 40.0, 32)
    assert np.asarray(meta["tgt"]["cam2world"]).shape == (4, 4)
    empty = render_object(renderer, spec, RenderSettings(size=32, min_coverage=0.99))
    assert empty.reason.startswith("empty render")
    renderer.close()


def test_rank_split_unions_to_the_single_run(tmp_path, capsys):
    render_procedural(8, tmp_path / "all", seed=5, **SMALL)
    assert "0 failed," in capsys.readouterr().out and not (tmp_path / "all" / "failures.jsonl").exists()
    parts = [render_procedural(8, tmp_path / f"r{r}", seed=5, rank=r, world_size=2, **SMALL) for r in (0, 1)]
    single, r0, r1 = read_shards(tmp_path / "all"), read_shards(tmp_path / "r0"), read_shards(tmp_path / "r1")
    assert len(single) == 16 and not set(r0) & set(r1) and set(r0) | set(r1) == set(single)
    assert all(r0[k]["tgt.png"] == single[k]["tgt.png"] for k in r0)      # identical content, not just keys
    assert parts[0]["objects"] > 0 and parts[1]["objects"] > 0
    assert all(json.loads(s["json"])["uid"].startswith("proc-s5-") for s in single.values())


def test_rank_defaults_come_from_slurm_then_torchrun(monkeypatch):
    for name in ("SLURM_PROCID", "SLURM_NTASKS", "RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert resolve_rank() == (0, 1)
    monkeypatch.setenv("RANK", "1"), monkeypatch.setenv("WORLD_SIZE", "4")
    assert resolve_rank() == (1, 4)
    monkeypatch.setenv("SLURM_PROCID", "2"), monkeypatch.setenv("SLURM_NTASKS", "3")
    assert resolve_rank() == (2, 3)
    with pytest.raises(ValueError):
        resolve_rank(3, 3)
    assert {rank_of(f"u{i}", 3) for i in range(30)} == {0, 1, 2}


def test_rerun_after_kill_loses_nothing_and_duplicates_nothing(tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "cli.py", "render", "procedural", "--count", "40", "--size", "32",
               "--pairs-per-object", "1", "--shard-size", "2", "--workers", "1", "--seed", "2", "--out", str(out)]
    process = subprocess.Popen(command, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not list(out.glob("*.tar")) and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)   # the job and its render worker, mid-run
    process.wait()
    assert 0 < len(list(out.glob("*.tar"))) < 20
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "already done" in done.stdout
    samples = read_shards(out)
    assert sorted(samples) == sorted(f"{procedural_uid(2, i)}_00" for i in range(40))
    assert not list(out.glob("*.tmp"))


def test_stuck_and_crashing_objects_are_recorded_and_the_job_goes_on(tmp_path, capsys):
    specs = [ObjectSpec("stuck", "procedural", time.sleep, (60,)),
             ObjectSpec("crash", "procedural", os._exit, (3,)),
             ObjectSpec(procedural_uid(0, 1), "procedural", make_object, (0, 1))]
    started = time.time()
    summary = run_render_job(specs, tmp_path, RenderSettings(size=32, pairs_per_object=1, timeout_s=2.0), "procedural",
                             workers=1)
    assert time.time() - started < 30
    assert f"2 failed (see {tmp_path}/failures.jsonl)" in capsys.readouterr().out
    failures = {row["uid"]: row["reason"] for row in map(json.loads, open(tmp_path / "failures.jsonl"))}
    assert failures["stuck"].startswith("timeout") and "exit code 3" in failures["crash"]
    assert summary["objects"] == 1 and list(read_shards(tmp_path)) == [f"{procedural_uid(0, 1)}_00"]
    image = np.asarray(Image.open(io.BytesIO(read_shards(tmp_path)[f"{procedural_uid(0, 1)}_00"]["src.png"])))
    assert image.shape == (32, 32, 4) and 0.01 < (image[..., 3] > 0).mean() < 0.95


def test_bad_options_fail_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="unknown backend 'vulkan'"):
        render_procedural(2, tmp_path / "a", backend="vulkan", **SMALL)
    with pytest.raises(ValueError, match="elevation"):
        render_procedural(2, tmp_path / "b", elevation_range="10", **SMALL)
    with pytest.raises(ValueError, match="symmetric-share"):
        render_procedural(2, tmp_path / "c", symmetric_share=1.5, **SMALL)
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()


def test_symmetric_share_is_part_of_the_job_record(tmp_path):
    render_procedural(2, tmp_path / "mix", symmetric_share=0.5, **SMALL)
    with pytest.raises(ValueError, match="other settings"):   # more objects must be the same mix, or it would lie
        render_procedural(3, tmp_path / "mix", **SMALL)
    assert render_procedural(3, tmp_path / "mix", symmetric_share=0.5, **SMALL)["skipped"] == 2


def test_cli_render_defaults_come_from_render_settings_and_agree_with_the_advice():
    """docs/train.md: render at twice the model size; the presets train at 32/64 px. cli.py stays light for --help."""
    import cli
    options = {o.name: o.default for o in cli.render_group.commands["procedural"].params}
    settings = RenderSettings()
    assert options["size"] == settings.size == 128
    assert (options["pairs_per_object"], options["delta_azimuth"], options["seed"], options["shard_size"],
            options["timeout_s"], options["backend"]) == (settings.pairs_per_object, settings.delta_azimuth_deg,
                                                           settings.seed, settings.shard_size, settings.timeout_s,
                                                           settings.backend)
    assert tuple(map(float, options["elevation_range"].split(","))) == settings.elevation_range
    loaded = subprocess.run([sys.executable, "-c", "import sys, cli; print(sorted({'torch', 'pyrender', 'OpenGL'} "
                             "& set(sys.modules)))"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"
