"""The sweep report: results.csv, report.md (the papers' tables in their layout, with the
registry's numbers beside this sweep's), tradeoff.png and latency.png.

  python launch.py --mode=report --workdir=DIR
"""

import csv
import json
import os
import statistics

import ml_collections

from mobilenet_jax.config import command_line, schema
from mobilenet_jax.config import workdir as workdir_lib
from mobilenet_jax.core import errors, tables, tracking
from mobilenet_jax.counting import paper

# What a configuration's seeds give as their mean.
AVERAGED = (
  "top1",
  "top5",
  "ema_top1",
  "images_per_second",
  "input_wait_fraction",
  "latency_ms",
  "onnxruntime_latency_ms",
  "int8_top1",  # the int8 model's arithmetic (export.OnnxModel(integer_kernels=False))
  "int8_onnxruntime_top1",  # onnxruntime's integer kernels on the member's CPU
  "int8_onnxruntime_latency_ms",
  "int8_litert_top1",  # the TFLite int8 file in LiteRT, where TensorFlow was installed
  "int8_litert_latency_ms",
  "teacher_pass_seconds",  # config.distill.cache's pass, which the members that read it share
)
COLUMNS = (
  "name",
  "arch",
  "width_multiplier",
  "resolution",
  "madds",
  "params",
  *AVERAGED,
  "int8_method",
  "status",
  "seeds",
  "top1_std",
)
IMAGENET = ("tfds:imagenet2012", "tfds:imagenet2012_subset")
# Members whose configs agree on these roles' keys are one configuration's seeds.
GROUPED_ROLES = ("model", "recipe")


def collect(workdir):
  """[(member name, config dict, summary dict)] for every member directory with a summary."""
  members = []
  for name in sorted(os.listdir(workdir)):
    folder = os.path.join(workdir, name)
    if os.path.exists(os.path.join(folder, "summary.json")):
      members.append(
        (
          name,
          workdir_lib.read_config(folder),
          tracking.read_json(os.path.join(folder, "summary.json")),
        )
      )
  return members


def _without_seed(config, teacher=True):
  """The configuration its seeds share; without `teacher`, also what a baseline run without
  config.distill's teacher shares with it."""
  config = {
    k: v
    for k, v in tracking.flatten(config, "config.").items()
    if schema.role(k) in GROUPED_ROLES and (teacher or not k.startswith("config.distill."))
  }
  return json.dumps(config, sort_keys=True)


def rows(members):
  """One row per configuration: members that differ only by seed (or where they ran) give mean
  (and std) values."""
  groups = {}
  for name, config, summary in members:
    groups.setdefault(_without_seed(config), []).append((name, config, summary))
  result = []
  for group in groups.values():
    name, config, summary = group[0]
    finished = [s for _, _, s in group if s.get("status") == "finished"]
    row = {key: summary.get(key) for key in COLUMNS}
    others = len(group) - 1
    row.update(
      name=name if not others else f"{name} (+{others} run{'s' * (others > 1)})",
      arch=config["model"]["name"],
      dataset=config["data"]["dataset"],
      seeds=len(finished),
      status=summary.get("status")
      if len(group) == 1
      else (
        "finished" if len(finished) == len(group) else f"{len(finished)}/{len(group)} finished"
      ),
    )
    for key in AVERAGED:
      values = [s[key] for s in finished if s.get(key) is not None]
      row[key] = statistics.fmean(values) if values else None
    top1s = [s["top1"] for s in finished if s.get("top1") is not None]
    row["top1_std"] = statistics.stdev(top1s) if len(top1s) > 1 else None
    row["config"] = config
    row["int8_method"] = int8_method(config) if row["int8_top1"] is not None else None
    result.append(row)
  return sorted(result, key=lambda r: (r["arch"], -r["width_multiplier"], -r["resolution"]))


def int8_method(config):
  """How a member's int8 model was made: 'QAT' (training.int8='qat' or a quantization-aware
  model) or 'post-training'."""
  quantization_aware = config["model"].get("quantized") or config["training"].get("int8") == "qat"
  return "QAT" if quantization_aware else "post-training"


def write_csv(path, table_rows):
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(table_rows)


def _pct(value, std=None):
  if value is None:
    return "–"
  return f"{100 * value:.1f}" + (f" ± {100 * std:.1f}" if std else "")


def _m(value, decimals=1):
  """Millions, with enough decimals that models under 10 M still differ."""
  if value is None:
    return "–"
  return f"{value / 1e6:.{decimals if value >= 1e7 else max(decimals, 3)}f}"


def _printed(value):
  return "–" if value is None else f"{value:g}"


def is_imagenet(table_rows):
  return all(r["dataset"] in IMAGENET for r in table_rows)


def published_rows(row):
  """The registry's published rows for a member: grid cells and ablations."""
  cell = paper.find(row["arch"], row["width_multiplier"], row["resolution"])
  if cell:
    return [p for p in (cell.paper, cell.slim) if p]
  if row["arch"] in paper.ABLATIONS and row["resolution"] == 224:
    return [paper.ABLATIONS[row["arch"]]]
  return []


def paper_table(table_rows, compare_accuracy):
  """Each member beside every published row for the same model; counts flagged if they differ."""
  int8 = any(row["int8_top1"] is not None for row in table_rows)
  header = (
    "model",
    "top-1 (this sweep)",
    "source",
    "top-1 (printed)",
    *(("int8 top-1 (this sweep)", "int8 top-1 (printed)") if int8 else ()),
    "M mult-adds counted / printed",
    "M params counted / printed",
    "check",
  )
  lines = []
  for row in table_rows:
    config = ml_collections.ConfigDict(row["config"])
    for published in published_rows(row):
      madds, params = paper.count_as(config, published.source)
      ok = published.agrees_with(madds, params)
      check = "ok" if ok else f"⚠ differs: {published.mismatch or 'not in the registry'}"
      lines.append(
        (
          f"{row['arch']} {row['width_multiplier']:g}-{row['resolution']}",
          _pct(row["top1"], row["top1_std"]),
          f"{published.source} {published.table}".strip(),
          _printed(published.top1) if compare_accuracy else "(not ImageNet)",
          *(
            (
              _pct(row["int8_top1"]),
              _printed(published.int8_top1) if compare_accuracy else "(not ImageNet)",
            )
            if int8
            else ()
          ),
          f"{_m(madds)} / {_printed(published.madds)}"
          + (f" {published.madds_unit}" if published.madds_unit != "M" else ""),
          f"{_m(params, 2)} / {_printed(published.params)}",
          check,
        )
      )
  return tables.markdown_table(header, lines) if lines else ""


def grid_table(table_rows):
  """Top-1 over α (rows) × resolution (columns), the layout of the papers' trade-off grids."""
  alphas = sorted({r["width_multiplier"] for r in table_rows}, reverse=True)
  resolutions = sorted({r["resolution"] for r in table_rows}, reverse=True)
  by_key = {(r["width_multiplier"], r["resolution"]): r for r in table_rows}
  lines = []
  for alpha in alphas:
    cells = []
    for res in resolutions:
      row = by_key.get((alpha, res))
      cells.append(
        "" if row is None else f"{_pct(row['top1'], row['top1_std'])} ({_m(row['madds'])} M)"
      )
    lines.append((f"α = {alpha:g}", *cells))
  return tables.markdown_table(("top-1 % (M mult-adds)", *map(str, resolutions)), lines)


def madds_rank_correlation(table_rows):
  """Spearman's rank correlation of mult-adds and top-1 over the configurations (seed-averaged),
  and how many there are; None below three. The papers' trade-off is this being near 1."""
  from scipy import stats  # half a second of every launch.py start, for reports only

  points = [(r["madds"], r["top1"]) for r in table_rows if r["top1"] is not None]
  if len(points) < 3:
    return None, len(points)
  return float(stats.spearmanr(*zip(*points)).statistic), len(points)


def results_table(table_rows):
  int8 = any(r["int8_top1"] is not None for r in table_rows)
  header = (
    "member",
    "arch",
    "α",
    "res",
    "M mult-adds",
    "M params",
    "top-1",
    "top-5",
    "EMA top-1",
    "train img/s",
    "input wait",
    "latency ms (batch 1)",
    *(("int8 top-1", "int8 ms (onnxruntime)", "int8 ms (LiteRT)") if int8 else ()),
    "status",
  )
  lines = [
    (
      r["name"],
      r["arch"],
      f"{r['width_multiplier']:g}",
      r["resolution"],
      _m(r["madds"]),
      _m(r["params"], 2),
      _pct(r["top1"], r["top1_std"]),
      _pct(r["top5"]),
      _pct(r["ema_top1"]),
      "–" if r["images_per_second"] is None else f"{r['images_per_second']:.0f}",
      "–" if r["input_wait_fraction"] is None else f"{r['input_wait_fraction']:.0%}",
      "–" if r["latency_ms"] is None else f"{r['latency_ms']:.2f}",
      *(
        (
          _pct(r["int8_top1"]),
          *(
            "–" if r[key] is None else f"{r[key]:.2f}"
            for key in ("int8_onnxruntime_latency_ms", "int8_litert_latency_ms")
          ),
        )
        if int8
        else ()
      ),
      r["status"],
    )
    for r in table_rows
  ]
  return tables.markdown_table(header, lines)


def teacher_lines(table_rows):
  """What config.distill taught the members with, one line per distinct teacher, and what each
  shared teacher pass (config.distill.cache) took."""
  teachers = sorted(
    {
      (d["teacher"], d["teacher_config"], d["temperature"], d["weight"])
      for d in (r["config"]["distill"] for r in table_rows)
      if d["teacher"]
    }
  )
  passes = {}
  for r in table_rows:
    if r["teacher_pass_seconds"] is not None:
      passes.setdefault(r["config"]["distill"]["cache"], []).append(r["teacher_pass_seconds"])
  return [
    f"- `{weights}`, {_teacher_model(spec)}, temperature {temperature:g}, distillation weight "
    f"{weight:g} (1 = teacher only)"
    for weights, spec, temperature, weight in teachers
  ] + [
    f"- One teacher pass through `{cache}` taught {len(seconds)} configurations: "
    f"{max(seconds):.0f} s, against {len(seconds) * max(seconds):.0f} s had each run it itself"
    for cache, seconds in sorted(passes.items())
  ]


def _teacher_model(spec):
  if not spec:
    return "the student's own model in float, at each student's resolution"
  try:
    teacher = command_line.load_config_file(spec, f"config.distill.teacher_config={spec!r}")
  except errors.UserError:  # moved since the sweep ran: the report still names it
    return f"config `{spec}`"
  model = teacher.model
  return f"config `{spec}` ({model.name} α={model.width_multiplier:g} at {teacher.resolution} px)"


def baseline_gains(table_rows, baseline_rows):
  """(row, its baseline row or None) for every row: the baseline's configuration that equals the
  row's but for config.distill."""
  by_config = {_without_seed(r["config"], teacher=False): r for r in baseline_rows}
  return [(r, by_config.get(_without_seed(r["config"], teacher=False))) for r in table_rows]


def baseline_table(gains):
  header = ("member", "α", "res", "top-1", "baseline member", "baseline top-1", "gain (points)")
  lines = []
  for r, b in gains:
    gain = (
      f"{100 * (r['top1'] - b['top1']):+.1f}"
      if b and r["top1"] is not None and b["top1"] is not None
      else "–"
    )
    lines.append(
      (
        r["name"],
        f"{r['width_multiplier']:g}",
        r["resolution"],
        _pct(r["top1"], r["top1_std"]),
        b["name"] if b else "– (none with this configuration)",
        _pct(b["top1"], b["top1_std"]) if b else "–",
        gain,
      )
    )
  return tables.markdown_table(header, lines)


def papers_curve(table_rows):
  """The papers' ImageNet top-1 for the sweep's models that they publish (the paper's number,
  else TF-slim's), as rows with this sweep's α and resolution and the published mult-adds."""
  curve = []
  for row in table_rows:
    published = [p for p in published_rows(row) if p.top1 is not None]
    if published:
      curve.append(
        {
          "width_multiplier": row["width_multiplier"],
          "resolution": row["resolution"],
          "madds": published[0].madds_count,
          "top1": published[0].top1 / 100,
        }
      )
  return curve


def _draw_lines(ax, points, x_key, y_key="top1", label_prefix=""):
  """`y_key` % against `x_key`, one solid line per α and one dashed line per resolution (for
  int8 points: one dotted line per α, square markers)."""
  styles = (("width_multiplier", "-o", "α"), ("resolution", "--", "res"))
  if label_prefix:
    styles = (("width_multiplier", ":s", "α"),)
  colors = 0  # an α's int8 line has its float line's colour: C0, C1, ... in α order
  for key, style, label in styles:
    for value in sorted({r[key] for r in points}):
      line = sorted((r for r in points if r[key] == value), key=lambda r: r[x_key])
      ax.plot(
        [r[x_key] for r in line],
        [100 * r[y_key] for r in line],
        style,
        color=f"C{colors % 10}",
        label=f"{label_prefix}{label} = {value:g}",
        alpha=0.4 if style == "--" else 0.9,
      )
      colors += 1
  if points:
    ax.set_xscale("log")
  ax.set_ylabel("top-1 %")
  ax.grid(True, which="both", alpha=0.3)
  ax.legend(fontsize=8, ncol=2)


def plot(path, table_rows, x_key, x_label, compare_accuracy, int8_x_key=None, baseline_rows=()):
  """Top-1 against `x_key`, and int8 top-1 against `int8_x_key` where members recorded it; on
  ImageNet the registry's published points overlaid, on other data the papers' ImageNet curve
  for the same models in a panel beside (its shape is what a smaller dataset can reproduce).
  The PNG's text chunks record how many points each drew."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  points = [r for r in table_rows if r["top1"] is not None and r.get(x_key) is not None]
  int8_points = [
    r for r in table_rows if r["int8_top1"] is not None and r.get(int8_x_key) is not None
  ]
  beside = papers_curve(points) if x_key == "madds" and not compare_accuracy else []
  fig, axes = plt.subplots(
    1, 2 if beside else 1, figsize=(13 if beside else 7, 5), dpi=110, squeeze=False, sharex=True
  )
  ax = axes[0][0]
  _draw_lines(ax, points, x_key)
  for method in sorted({r["int8_method"] for r in int8_points}):
    method_points = [r for r in int8_points if r["int8_method"] == method]
    _draw_lines(ax, method_points, int8_x_key, "int8_top1", f"int8 {method}, ")
  baseline_points = [r for r in baseline_rows if r["top1"] is not None and r.get(x_key)]
  _draw_lines(ax, baseline_points, x_key, label_prefix="baseline, ")
  published = []
  if compare_accuracy and x_key == "madds":
    for r in points:
      for p in published_rows(r):
        published.append((p.madds_count, p.top1, p.source))
        if int8_points and p.int8_top1 is not None:
          published.append((p.madds_count, p.int8_top1, f"{p.source} int8"))
    for source in sorted({s for _, _, s in published}):
      xs, ys = zip(*[(x, y) for x, y, s in published if s == source])
      ax.scatter(xs, ys, marker="x", s=50, label=source)
    ax.legend(fontsize=8, ncol=2)
  datasets = sorted({r["dataset"] for r in table_rows})
  ax.set_xlabel(x_label)
  ax.set_title(f"top-1 vs {x_label} ({', '.join(datasets)})")
  if beside:
    _draw_lines(axes[0][1], beside, "madds")
    axes[0][1].set_xlabel("mult-adds (published)")
    axes[0][1].set_title(f"the papers' ImageNet top-1, {len(beside)} of these models")
  fig.tight_layout()
  fig.savefig(
    path,
    metadata={
      "points": str(len(points)),
      "int8_points": str(len(int8_points)),
      "baseline_points": str(len(baseline_points)),
      "int8_methods": ",".join(sorted({r["int8_method"] for r in int8_points})),
      "published_points": str(len(published)),
      "papers_curve_points": str(len(beside)),
    },
  )
  plt.close(fig)
  return len(points)


def log_to_wandb(table_rows, workdir, plots):
  """One 'report' run in the sweep's W&B group with the table and the plots."""
  config = table_rows[0]["config"]["wandb"]
  mode = tracking.wandb_mode(config["mode"])
  if mode == "disabled":
    return
  import wandb

  run = wandb.init(
    project=config["project"],
    entity=config["entity"] or None,
    group=config["group"] or None,
    job_type="report",
    mode=mode,
    dir=os.path.abspath(workdir),
    settings=wandb.Settings(silent=True),
  )
  table = wandb.Table(columns=list(COLUMNS), data=[[r.get(c) for c in COLUMNS] for r in table_rows])
  run.log(
    {
      "results": table,
      **{name: wandb.Image(os.path.join(workdir, f"{name}.png")) for name in plots},
    }
  )
  run.finish()


def _sweep_rows(workdir, named=None):
  """rows() of the sweep in `workdir`; none is one line naming it as `named` (else its path)."""
  table_rows = rows(collect(workdir)) if os.path.isdir(workdir) else []
  if not table_rows:
    raise errors.UserError(
      f"{named or workdir} has no member directories with a summary.json: run a "
      "sweep there first (--sweep=FILE --workdir=DIR)"
    )
  return table_rows


def write(workdir: str, baseline: str | None = None) -> list[dict]:
  """Writes results.csv, report.md, tradeoff.png and latency.png in `workdir`; returns rows.
  With `baseline` (another sweep's workdir, the same members without a teacher, say), the plots
  draw its curves too and report.md gives each member's gain over it."""
  table_rows = _sweep_rows(workdir)
  baseline_rows = _sweep_rows(baseline, f"--baseline={baseline}") if baseline else []
  compare = is_imagenet(table_rows)
  write_csv(os.path.join(workdir, "results.csv"), table_rows)
  plot(
    os.path.join(workdir, "tradeoff.png"),
    table_rows,
    "madds",
    "mult-adds",
    compare,
    "madds",
    baseline_rows,
  )
  plot(
    os.path.join(workdir, "latency.png"),
    table_rows,
    "latency_ms",
    "batch-1 latency (ms, this machine)",
    compare,
    baseline_rows=baseline_rows,
  )
  plots = {"tradeoff": "top-1 vs mult-adds", "latency": "top-1 vs latency"}
  # Members run with config.training.onnx_latency or int8.
  if any(r["onnxruntime_latency_ms"] is not None for r in table_rows):
    plot(
      os.path.join(workdir, "latency_onnxruntime.png"),
      table_rows,
      "onnxruntime_latency_ms",
      "batch-1 latency in onnxruntime (ms, 1 thread, this machine)",
      compare,
      "int8_onnxruntime_latency_ms",
    )
    plots["latency_onnxruntime"] = "top-1 vs onnxruntime latency"
  datasets = sorted({r["dataset"] for r in table_rows})
  parts = [
    f"# Sweep report: {os.path.basename(os.path.abspath(workdir))}",
    "",
    f"Dataset: {', '.join(datasets)}. "
    + (
      "Accuracy is compared with the papers' ImageNet numbers."
      if compare
      else "Not ImageNet: the papers' accuracy columns are shown for reference only and are "
      "not compared; mult-adds and params are."
    ),
    "",
    "## Results",
    "",
    results_table(table_rows),
    "",
    "## Top-1 over width multiplier α × resolution",
    "",
    grid_table(table_rows),
    "",
  ]
  teachers = teacher_lines(table_rows)
  if teachers:
    parts += ["## Teacher (config.distill)", "", *teachers, ""]
  if baseline:
    parts += [
      f"## Against the baseline {os.path.basename(os.path.abspath(baseline))}",
      "",
      f"Each member beside the member of `{baseline}` whose configuration equals its own but for "
      "config.distill; the plots draw the baseline's curves dotted.",
      "",
      baseline_table(baseline_gains(table_rows, baseline_rows)),
      "",
    ]
  correlation, count = madds_rank_correlation(table_rows)
  if correlation is not None:
    parts += [
      f"Spearman rank correlation of mult-adds and top-1 over the {count} "
      f"configurations: {correlation:.3f}.",
      "",
    ]
  papers_correlation, papers_count = madds_rank_correlation(papers_curve(table_rows))
  if papers_correlation is not None and not compare:
    parts += [
      f"The same correlation over the papers' ImageNet top-1 for the {papers_count} of "
      f"these models they publish: {papers_correlation:.3f}.",
      "",
    ]
  published = paper_table(table_rows, compare)
  if published:
    parts += [
      "## Beside the papers (V1 Tables 4-9, V2 Table 4, V3 Table 3, the MNv4 paper, TF-slim)",
      "",
      "Counts are this model's, in each source's convention (classes, BN variables); "
      "⚠ marks a printed number that differs from the count.",
      "",
      published,
      "",
    ]
  parts += [line for name, title in plots.items() for line in (f"![{title}]({name}.png)", "")]
  with open(os.path.join(workdir, "report.md"), "w") as f:
    f.write("\n".join(parts))
  log_to_wandb(table_rows, workdir, plots)
  return table_rows
