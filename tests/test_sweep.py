"""Sweeps: the resumable launcher end to end, failure isolation, dry runs, and the report."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from PIL import Image

from mobilenet_jax.config import schema as config_lib
from mobilenet_jax.core import errors
from mobilenet_jax.counting import accounting, paper
from mobilenet_jax.sweeps import definition, launching, ray_launcher, report
from tests.helpers import REPO, load_config, run_launch

SWEEP_FILE = """
from mobilenet_jax.sweeps import definition
from mobilenet_jax.sweeps import launching

def get_sweep():
  return definition.Sweep("tiny_sweep", (
      definition.Member("alpha1_res16", "configs/tiny.py"),
      definition.Member("broken", "configs/tiny.py", (("model.width_multiplier", -1.0),)),
      definition.Member("alpha0.5_res8", "configs/tiny.py",
                   (("model.width_multiplier", 0.5), ("resolution", 8))),
  ))
"""


def launch_sweep(sweep_file, workdir, *extra, own_cache=True):
  args = [
    sys.executable,
    "launch.py",
    f"--sweep={sweep_file}",
    f"--workdir={workdir}",
    "--config.training.num_steps=20",
    "--config.training.log_every_steps=10",
    "--config.wandb.mode=disabled",
    *extra,
  ]
  env = dict(os.environ, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
  if own_cache:  # the sweep's own cache in its workdir, every compile in it, however fast
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
  # Otherwise the members share the session's, where earlier tests left the tiny programs.
  return subprocess.Popen(
    args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
  )


@pytest.mark.slow
def test_sweep_isolates_failures_resumes_after_a_kill_and_reports(tmp_path):
  sweep_file = tmp_path / "tiny_sweep.py"
  sweep_file.write_text(SWEEP_FILE)
  workdir = tmp_path / "sweep"
  first = launch_sweep(sweep_file, workdir)
  deadline = time.time() + 300
  while time.time() < deadline and not (workdir / "alpha0.5_res8" / "launch.log").exists():
    time.sleep(0.2)
  first.send_signal(signal.SIGTERM)  # mid-sweep: the last member has just started
  output = first.communicate(timeout=300)[0]
  assert first.returncode != 0, output
  finished = json.load(open(workdir / "alpha1_res16" / "summary.json"))
  assert finished["status"] == "finished", output
  metrics_before = (workdir / "alpha1_res16" / "metrics.jsonl").read_text()
  assert any((workdir / launching.COMPILATION_CACHE).iterdir())  # the members' shared cache

  second = launch_sweep(sweep_file, workdir)
  output = second.communicate(timeout=300)[0]
  assert second.returncode == 1, output  # the broken member fails again, alone
  assert "alpha1_res16: finished before, skipped" in output
  assert "2/3 finished" in output and "broken: failed" in output
  assert "config.model.width_multiplier=-1.0" in output  # its error, reported
  assert (workdir / "alpha1_res16" / "metrics.jsonl").read_text() == metrics_before
  statuses = json.load(open(workdir / "sweep.json"))["members"]
  assert statuses["alpha0.5_res8"] == "finished" and statuses["broken"].startswith("failed")

  with open(workdir / "results.csv") as f:
    rows = list(csv.DictReader(f))
  assert sorted(r["name"] for r in rows) == ["alpha0.5_res8", "alpha1_res16"]
  assert all(float(r["latency_ms"]) > 0 and float(r["madds"]) > 0 for r in rows)
  plot = Image.open(workdir / "tradeoff.png")
  assert plot.format == "PNG" and plot.text["points"] == "2"
  assert Image.open(workdir / "latency.png").text["points"] == "2"
  assert "Not ImageNet" in (workdir / "report.md").read_text()


@pytest.mark.slow
def test_zero_jobs_is_refused_before_anything_runs(tmp_path):
  result = run_launch(
    "--sweep=experiments/quickstart.py", f"--workdir={tmp_path / 'sweep'}", "--jobs=0"
  )
  assert result.returncode != 0
  assert "error: --jobs=0; allowed: integers >= 1" in result.stderr
  assert "Traceback" not in result.stderr and not (tmp_path / "sweep").exists()


@pytest.mark.slow
def test_dry_run_prints_one_command_per_member(tmp_path):
  result = run_launch(
    "--sweep=experiments/v2_tradeoff.py",
    f"--workdir={tmp_path}",
    "--dry_run",
    "--config.data.data_dir=/data/tfds",
  )
  assert result.returncode == 0, result.stderr
  lines = result.stdout.strip().splitlines()
  assert len(lines) == 21
  assert all(
    "--config.wandb.group=v2_tradeoff" in line
    and line.endswith("--config.data.data_dir=/data/tfds")
    for line in lines
  )
  assert any(
    "--config.model.width_multiplier=1.4 --config.resolution=224" in line for line in lines
  )
  assert not os.listdir(tmp_path)  # a dry run writes nothing


@pytest.mark.parametrize(
  "name,count",
  [
    ("quickstart", 9),
    ("v1_tradeoff", 16),
    ("v1_ablations", 4),
    ("v2_tradeoff", 21),
    ("imagenette_tradeoff", 9),
    ("v3_quickstart", 4),
  ],
)
def test_experiment_members_are_valid_configs(name, count):
  the_sweep = definition.load_sweep(str(REPO / "experiments" / f"{name}.py"))
  assert len(the_sweep.members) == count
  for member in the_sweep.members:
    config_lib.validate(definition.member_config(member))


def write_member(workdir, name, config, top1, seed=0, **summary_values):
  folder = workdir / name
  folder.mkdir(parents=True)
  config.seed = seed
  (folder / "config.json").write_text(config.to_json_best_effort())
  counts = accounting.profile(config)
  summary = {
    "status": "finished",
    "top1": top1,
    "top5": top1 + 0.2,
    "ema_top1": top1,
    "madds": counts.madds,
    "params": counts.params,
    "latency_ms": 1.0,
    "images_per_second": 10.0,
    "width_multiplier": config.model.width_multiplier,
    "resolution": config.resolution,
    **summary_values,
  }
  (folder / "summary.json").write_text(json.dumps(summary))


@pytest.mark.slow
def test_off_imagenet_the_report_draws_the_papers_curve_for_the_same_models_beside(tmp_path):
  for width, res, top1 in ((0.5, 64, 0.63), (0.5, 96, 0.68), (0.5, 128, 0.70), (0.75, 128, 0.74)):
    config = load_config("mobilenet_v2", f"width={width},res={res}")
    config.data.dataset = "folder:imagenette"
    write_member(tmp_path, f"v2_{width}_{res}", config, top1, onnxruntime_latency_ms=res / 10)
  report.write(str(tmp_path))
  assert Image.open(tmp_path / "latency_onnxruntime.png").text["points"] == "4"
  assert (
    "![top-1 vs onnxruntime latency](latency_onnxruntime.png)"
    in (tmp_path / "report.md").read_text()
  )
  plot = Image.open(tmp_path / "tradeoff.png")
  # TF-slim publishes three of the four (not 64 px); their ImageNet top-1 rises with mult-adds.
  assert (plot.text["points"], plot.text["papers_curve_points"]) == ("4", "3")
  assert [
    row["top1"] for row in report.papers_curve(report.rows(report.collect(str(tmp_path))))
  ] == [
    paper.find("mobilenet_v2", w, r).slim.top1 / 100
    for w, r in ((0.75, 128), (0.5, 128), (0.5, 96))
  ]
  assert (
    "The same correlation over the papers' ImageNet top-1 for the 3 of these models they "
    "publish: 1.000."
  ) in (tmp_path / "report.md").read_text()


@pytest.mark.slow
def test_report_puts_the_registrys_numbers_beside_the_sweeps(tmp_path):
  config = load_config("mobilenet_v1", "width=0.5,res=160")
  config.data.dataset = "tfds:imagenet2012"
  config.wandb.mode = "disabled"
  write_member(tmp_path, "seed0", config, 0.58, seed=0)
  placed = config.copy_and_resolve_references()
  placed.resources.processes, placed.data.worker_processes = 2, 2
  write_member(tmp_path, "seed1_two_processes", placed, 0.60, seed=1)
  table_rows = report.write(str(tmp_path))
  # Neither the seed nor the placement makes another configuration.
  assert len(table_rows) == 1 and table_rows[0]["seeds"] == 2
  assert table_rows[0]["name"] == "seed0 (+1 run)"
  assert table_rows[0]["top1"] == pytest.approx(0.59)
  assert table_rows[0]["top1_std"] == pytest.approx(0.0141421, rel=1e-4)
  text = (tmp_path / "report.md").read_text()
  cells = [
    [c.strip() for c in line.split("|")[1:-1]]
    for line in text.splitlines()
    if line.startswith("| mobilenet_v1 0.5-160")
  ]
  cell = paper.find("mobilenet_v1", 0.5, 160)
  # Counted in each source's convention: 1000 classes for the paper, 1001 (+BN) for TF-slim.
  assert cells == [
    [
      "mobilenet_v1 0.5-160",
      "59.0 ± 1.4",
      "V1 paper Table 9",
      f"{cell.paper.top1:g}",
      "76.5 / 76",
      "1.321 / 1.32",
      "ok",
    ],
    [
      "mobilenet_v1 0.5-160",
      "59.0 ± 1.4",
      "TF-slim 2018_02_22",
      f"{cell.slim.top1:g}",
      "76.5 / 77",
      "1.338 / 1.34",
      "ok",
    ],
  ]
  assert Image.open(tmp_path / "tradeoff.png").text["published_points"] == "2"


@pytest.mark.slow
def test_int8_members_put_their_int8_points_beside_float_and_slims_int8_checkpoints(tmp_path):
  for width, top1, int8, method in (
    (0.75, 0.66, 0.655, "post_training"),
    (0.5, 0.61, 0.60, "qat"),
  ):
    config = load_config("mobilenet_v1", f"width={width},res=224")
    config.data.dataset, config.wandb.mode = "tfds:imagenet2012", "disabled"
    config.training.int8 = method
    write_member(
      tmp_path,
      f"v1_{width}",
      config,
      top1,
      onnxruntime_latency_ms=width * 10,
      int8_top1=int8,
      int8_onnxruntime_latency_ms=width * 4,
    )
  report.write(str(tmp_path))
  with open(tmp_path / "results.csv") as f:
    assert [
      (r["int8_top1"], r["int8_onnxruntime_latency_ms"], r["int8_method"])
      for r in csv.DictReader(f)
    ] == [("0.655", "3.0", "post-training"), ("0.6", "2.0", "QAT")]
  for plot in ("tradeoff.png", "latency_onnxruntime.png"):
    assert Image.open(tmp_path / plot).text["int8_points"] == "2"
    assert Image.open(tmp_path / plot).text["int8_methods"] == "QAT,post-training"
  assert Image.open(tmp_path / "latency.png").text["int8_points"] == "0"  # JAX float only
  assert (
    Image.open(tmp_path / "tradeoff.png").text["published_points"] == "6"
  )  # each: paper, TF-slim, TF-slim int8
  text = (tmp_path / "report.md").read_text()
  slim = [
    [c.strip() for c in line.split("|")[1:-1]][:6]
    for line in text.splitlines()
    if "| TF-slim 2018_02_22" in line
  ]
  # TF-slim's quantization-aware int8 V1 0.75-224 and 0.5-224 beside their float rows.
  assert slim == [
    ["mobilenet_v1 0.75-224", "66.0", "TF-slim 2018_02_22", "68.4", "65.5", "67.9"],
    ["mobilenet_v1 0.5-224", "61.0", "TF-slim 2018_02_22", "63.3", "60.0", "62.2"],
  ]


@pytest.mark.slow
def test_report_reads_members_written_before_config_keys_were_added(tmp_path):
  config = load_config("mobilenet_v2", "width=0.5,res=160")
  config.data.dataset = "tfds:imagenet2012"
  write_member(tmp_path, "old", config, 0.6)
  old = json.loads((tmp_path / "old" / "config.json").read_text())
  for group, key in (
    ("model", "pooled_head_channels"),
    ("model", "pooled_head_norm"),
    ("model", "kernel_init"),
    ("training", "measure_latency"),
  ):
    del old[group][key]
  (tmp_path / "old" / "config.json").write_text(json.dumps(old))
  assert report.write(str(tmp_path))[0]["madds"] == accounting.profile(config).madds
  assert "| mobilenet_v2 0.5-160" in (tmp_path / "report.md").read_text()


@pytest.mark.slow
def test_report_takes_v3_and_mnv4_members_beside_their_published_rows(tmp_path):
  for name, top1 in (("mobilenet_v3_small", 0.6), ("mobilenet_v4_conv_small", 0.7)):
    config = load_config(name)
    config.data.dataset = "tfds:imagenet2012"
    config.wandb.mode = "disabled"
    write_member(tmp_path, name, config, top1)
  report.write(str(tmp_path))
  text = (tmp_path / "report.md").read_text()
  rows = [
    [c.strip() for c in line.split("|")[1:-1]]
    for line in text.splitlines()
    if line.startswith(("| mobilenet_v3_small 1-224", "| mobilenet_v4_conv_small 1-224"))
  ]
  assert [(r[2], r[4], r[5], r[6][:9]) for r in rows] == [
    ("V3 paper Table 3", "56.5 / 56", "2.531 / 2.5", "ok"),
    ("TF-slim", "56.5 / 66", "2.532 / 2.9", "⚠ differs"),
    ("MNv4 paper", "186.0 / 0.2 G", "3.774 / 3.8", "ok"),
  ]
  assert Image.open(tmp_path / "tradeoff.png").text["published_points"] == "3"


@pytest.mark.slow
def test_report_states_the_rank_correlation_of_mult_adds_and_top1(tmp_path):
  config = load_config("tiny")
  config.wandb.mode = "disabled"
  # Mult-adds grow with α; top-1 follows except for one swapped pair: 1 - 6 * 2 / (4 * 15).
  for alpha, top1 in ((0.25, 0.5), (0.5, 0.7), (0.75, 0.6), (1.0, 0.8)):
    config.model.width_multiplier = alpha
    write_member(tmp_path, f"alpha{alpha}", config, top1)
  rows = report.write(str(tmp_path))
  assert report.madds_rank_correlation(rows) == (pytest.approx(0.8), 4)
  assert (
    "Spearman rank correlation of mult-adds and top-1 over the 4 configurations: 0.800."
    in (tmp_path / "report.md").read_text()
  )
  assert report.madds_rank_correlation(rows[:2]) == (None, 2)


def test_quickstart_grid_is_the_one_the_readme_states():
  from experiments import quickstart

  the_sweep = definition.load_sweep(str(REPO / "experiments" / "quickstart.py"))
  grid = {
    (dict(m.overrides)["model.width_multiplier"], dict(m.overrides)["resolution"])
    for m in the_sweep.members
  }
  assert grid == {(a, r) for a in (0.25, 0.5, 1.0) for r in (8, 16, 32)}
  for member in the_sweep.members:
    assert member.config == "configs/tiny.py:preset=short"
    assert dict(member.overrides)["data.dataset"] == "glyphs"
    assert dict(member.overrides)["training.num_steps"] == 300
  readme = (REPO / "README.md").read_text()
  stated = (
    f"α ∈ {{{', '.join(f'{a:g}' for a in quickstart.WIDTHS)}}} × resolution ∈ "
    f"{{{', '.join(map(str, quickstart.RESOLUTIONS))}}}"
  )
  assert stated in readme


@pytest.mark.slow
def test_a_member_checkpoints_and_stops_when_its_launcher_is_killed(tmp_path):
  sweep_file = tmp_path / "one_member.py"
  sweep_file.write_text(
    "from mobilenet_jax.sweeps import definition as sweep\n"
    "def get_sweep():\n"
    "  return sweep.Sweep('one', (sweep.Member('m', 'configs/tiny.py'),))\n"
  )
  workdir = tmp_path / "sweep"
  launcher = launch_sweep(
    sweep_file, workdir, "--config.training.num_steps=100000", own_cache=False
  )
  metrics = workdir / "m" / "metrics.jsonl"
  deadline = time.time() + 120
  while time.time() < deadline and not (metrics.exists() and metrics.read_text().count("\n") > 1):
    time.sleep(0.2)
  assert launcher.poll() is None, launcher.communicate()[0]
  second = launch_sweep(sweep_file, workdir, own_cache=False)  # held: refused in one line
  output = second.communicate(timeout=120)[0]
  assert second.returncode != 0 and "is in use by pid" in output and "Traceback" not in output
  launcher.kill()  # kill -9: the member must not go on as an orphan
  deadline = time.time() + 120
  while time.time() < deadline and not (workdir / "m" / "summary.json").exists():
    time.sleep(0.2)
  summary = json.load(open(workdir / "m" / "summary.json"))
  assert summary["status"] == "preempted" and 0 < summary["steps"] < 100000


@pytest.mark.slow
@pytest.mark.parametrize("workdir", ["missing", "empty"])
def test_report_on_a_directory_without_members_is_one_line(tmp_path, workdir):
  (tmp_path / "empty").mkdir()
  result = run_launch("--mode=report", f"--workdir={tmp_path / workdir}")
  assert result.returncode != 0 and "Traceback" not in result.stderr
  assert result.stderr.strip() == (
    f"error: {tmp_path / workdir} has no member directories with "
    "a summary.json: run a sweep there first "
    "(--sweep=FILE --workdir=DIR)"
  )


def test_sweep_file_mistakes_are_config_errors(tmp_path):
  with pytest.raises(
    errors.ConfigError,
    match=r"names 'alpha', which is not an axis; "
    r"axes: \['resolution'\]",
  ):
    definition.grid("configs/tiny.py", "a{alpha}", {"resolution": (8, 16)})
  broken = tmp_path / "broken.py"
  broken.write_text("def get_sweep(:\n")
  with pytest.raises(
    errors.ConfigError, match=rf"--sweep={broken}: {broken} line 1: invalid syntax"
  ):
    definition.load_sweep(str(broken))


def test_a_member_stopped_with_the_launcher_keeps_its_on_disk_status(tmp_path):
  member = definition.Member("m", "configs/tiny.py")
  (tmp_path / "m").mkdir()
  (tmp_path / "m" / "launch.log").write_text("step 5/100\n")
  # Stopping: SIGTERM's exit, or no exit code (a Ray worker ended by the cancel), is not a failure.
  for code in (-signal.SIGTERM, None):
    assert launching.ended_status(str(tmp_path), member, code, stopped=True) == "pending"
  (tmp_path / "m" / "summary.json").write_text('{"status": "preempted"}')
  assert launching.ended_status(str(tmp_path), member, None, stopped=True) == "preempted"
  assert launching.ended_status(str(tmp_path), member, None) == "failed (exit None): step 5/100"


def test_a_member_that_no_node_or_not_the_whole_cluster_can_hold_is_named():
  def asks(**values):
    resources = config_lib.base_config().resources
    resources.update(values)
    return resources

  nodes = [{"CPU": 16.0, "GPU": 8.0}, {"CPU": 16.0}]
  assert ray_launcher.unplaceable(asks(gpus=8.0), nodes) == ""
  assert ray_launcher.unplaceable(asks(gpus=16.0), nodes) == (
    "it asks for GPU: 16 per process and no node of the cluster has more than 8"
  )
  assert ray_launcher.unplaceable(asks(processes=33), nodes) == (
    "it asks for CPU: 33 over 33 processes and the cluster has 32"
  )


@pytest.mark.slow
def test_a_taught_sweep_reports_its_teacher_and_each_members_gain_over_a_baseline(tmp_path):
  teacher_config = str(REPO / "configs" / "mobilenet_v2.py")
  taught, baseline = tmp_path / "taught", tmp_path / "baseline"
  for res, with_teacher, without in ((96, 0.63, 0.60), (128, 0.66, 0.65), (160, 0.70, None)):
    config = load_config("mobilenet_v2", f"width=0.5,res={res}")
    config.data.dataset, config.wandb.mode = "glyphs", "disabled"
    if without is not None:
      write_member(baseline, f"res{res}", config, without)
    config.distill.teacher, config.distill.teacher_config = "slim_npy:/w/v2", teacher_config
    config.distill.temperature, config.distill.weight = 2.0, 0.7
    config.distill.cache = "/w/cache"
    write_member(taught, f"res{res}_taught", config, with_teacher, teacher_pass_seconds=120.0)
  report.write(str(taught), str(baseline))
  text = (taught / "report.md").read_text()
  assert (
    f"- `slim_npy:/w/v2`, config `{teacher_config}` (mobilenet_v2 α=1 at 224 px), temperature "
    "2, distillation weight 0.7 (1 = teacher only)\n- One teacher pass through `/w/cache` taught "
    "3 configurations: 120 s, against 360 s had each run it itself\n" in text
  )
  gains = [
    [c.strip() for c in line.split("|")[1:-1]]
    for line in text.split("## Against the baseline baseline")[1].splitlines()
    if line.startswith("| res")
  ]
  assert [(g[0], g[4], g[6]) for g in gains] == [
    ("res160_taught", "– (none with this configuration)", "–"),
    ("res128_taught", "res128", "+1.0"),
    ("res96_taught", "res96", "+3.0"),
  ]
  plot = Image.open(taught / "tradeoff.png")
  assert (plot.text["points"], plot.text["baseline_points"]) == ("3", "2")
  assert "## Teacher" not in (report.write(str(baseline)) and (baseline / "report.md").read_text())

  empty = tmp_path / "empty"
  empty.mkdir()
  result = run_launch("--mode=report", f"--workdir={taught}", f"--baseline={empty}")
  assert result.returncode == 1 and result.stderr == (
    f"error: --baseline={empty} has no member directories with a summary.json: run a sweep "
    "there first (--sweep=FILE --workdir=DIR)\n"
  )
