"""The text and JSON that `launch.py --mode=profile` prints."""

import json

from mobilenet_jax.core import tables
from mobilenet_jax.counting import accounting, paper


def summary(config, counts):
  """The machine-readable profile: one flat dict of integers and the config's α and ρ."""
  return {
    "model": config.model.name,
    "width_multiplier": config.model.width_multiplier,
    "resolution": config.resolution,
    "rho": round(config.resolution / 224, 4),
    "num_classes": config.model.num_classes,
    "madds": counts.madds,
    "params": counts.params,
    "bn_params": counts.bn_params,
    "bn_stats": counts.bn_stats,
  }


def render(config, counts):
  """A readable report: per layer type (with Table 2 beside it when it applies), per block."""
  by_type = counts.by_type()
  total_madds = sum(m for m, _ in by_type.values())
  total_kernels = sum(k for _, k in by_type.values())
  with_paper = paper.table2_applies(config)
  headers = ["layer type", "mult-adds", "% mult-adds", "kernel params", "% params"]
  if with_paper:
    headers[3:3] = ["paper %"]
    headers.append("paper %")
  rows = []
  for layer_type, (madds, kernels) in by_type.items():
    row = [layer_type, madds, 100 * madds / total_madds, kernels, 100 * kernels / total_kernels]
    if with_paper:
      paper_madds, paper_params = paper.V1_TABLE2.get(layer_type, (None, None))
      row[3:3] = [paper_madds]
      row.append(paper_params)
    rows.append(row)
  block_rows = [
    [b.name, b.block, b.channels, b.stride, "x".join(map(str, b.output_shape)), b.madds, b.params]
    for b in counts.blocks
  ]
  lines = [
    f"{config.model.name}  width_multiplier={config.model.width_multiplier}  "
    f"resolution={config.resolution} (rho={config.resolution / 224:.3f})  "
    f"classes={config.model.num_classes}",
    "",
    "Per layer type (paper convention: multiply-adds of convolutions and dense layers):",
    tables.markdown_table(headers, rows),
  ]
  if with_paper:
    lines.append(
      f"paper % is V1 Table 2; its printed {paper.V1_TABLE2_PRINTED_CONV3X3_MADDS}% "
      "for conv 3x3 mult-adds is a transposition of 1.91% (the rows must sum to 100)."
    )
  lines += [
    "",
    "Per block:",
    tables.markdown_table(
      ["block", "type", "channels", "stride", "output", "mult-adds", "params"], block_rows
    ),
    "",
    f"mult-adds {counts.madds:,} ({counts.madds / 1e6:.1f}M)   params {counts.params:,} "
    f"({counts.params / 1e6:.2f}M)   BN scale/offset {counts.bn_params:,}   "
    f"BN statistics {counts.bn_stats:,}",
  ]
  return "\n".join(lines + published_lines(config))


def published_lines(config):
  """The published rows for this model, each counted in its source's convention."""
  cell = paper.find(config.model.name, config.model.width_multiplier, config.resolution)
  if cell is None:
    return []
  rows = []
  for published in filter(None, (cell.paper, cell.slim)):
    madds, params = paper.count_as(config, published.source)
    unit = paper.UNITS[published.madds_unit]
    rows.append(
      [
        f"{published.source} {published.table}".strip(),
        f"{madds / unit:.3f} / {published.madds:g}{published.madds_unit}",
        f"{params / 1e6:.3f} / {published.params:g}M",
        "ok" if published.agrees_with(madds, params) else f"⚠ {published.mismatch}",
      ]
    )
  return [
    "",
    "Published (counted in each source's convention / printed):",
    tables.markdown_table(["source", "mult-adds", "params", "check"], rows),
  ]


def run(config, out=print):
  counts = accounting.profile(config)
  out(render(config, counts))
  out(json.dumps(summary(config, counts)))
  return counts
