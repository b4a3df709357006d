"""The expected-results registry against the model zoo's counter: every published cell."""

import csv

import pytest

from mobilenet_jax.counting import paper, profile_report
from tests.helpers import SHARED, load_config, needs_artifacts

SLIM_CSV = SHARED / "reference" / "slim_checkpoints.csv"


def test_grid_has_the_papers_cells():
  v1 = [(c.width_multiplier, c.resolution) for c in paper.GRID if c.arch == "mobilenet_v1"]
  v2 = [(c.width_multiplier, c.resolution) for c in paper.GRID if c.arch == "mobilenet_v2"]
  assert sorted(v1) == sorted((a, r) for a in (1.0, 0.75, 0.5, 0.25) for r in (224, 192, 160, 128))
  assert sorted(v2) == sorted(
    [(a, r) for a in (1.0, 0.75, 0.5, 0.35) for r in (224, 192, 160, 128, 96)]
    + [(1.4, 224), (1.3, 224)]
  )


@pytest.mark.slow
@pytest.mark.parametrize(
  "cell",
  paper.GRID + paper.V3 + paper.MNV4 + paper.TIMM_MNV4,
  ids=lambda c: c.name.replace(" ", "_"),
)
def test_published_counts_agree_with_the_counter_except_where_flagged(cell):
  config = load_config(cell.arch, f"width={cell.width_multiplier},res={cell.resolution}")
  for published in filter(None, (cell.paper, cell.slim)):
    madds, params = paper.count_as(config, published.source)
    assert published.agrees_with(madds, params) == (not published.mismatch), (
      published,
      madds,
      params,
    )


@pytest.mark.parametrize("name", sorted(paper.ABLATIONS))
def test_ablation_counts_agree(name):
  published = paper.ABLATIONS[name]
  madds, params = paper.count_as(load_config(name), published.source)
  assert published.agrees_with(madds, params) == (not published.mismatch), (
    published,
    madds,
    params,
  )


def test_agrees_reads_printed_precision_rounded_or_truncated():
  assert paper.agrees(290_675_200, 290) and paper.agrees(290_675_200, 291)
  assert not paper.agrees(290_675_200, 292)
  assert paper.agrees(3_472_041, 3.47) and not paper.agrees(3_472_041, 3.6)
  assert paper.agrees(1_320_648, 1.32) and paper.agrees(4_210_088, 4.2)


@pytest.mark.parametrize(
  "name,expected",
  [
    (
      "mobilenet_v3_large",
      [
        "V3 paper Table 3 | 216.590 / 219M | 5.459 / 5.4M | ⚠ the V3 paper",
        "TF-slim | 216.591 / 217M | 5.460 / 5.4M | ok",
      ],
    ),
    (
      "mobilenet_v3_small",
      [
        "V3 paper Table 3 | 56.510 / 56M | 2.531 / 2.5M | ok",
        "TF-slim | 56.511 / 66M | 2.532 / 2.9M | ⚠ TF-slim's README",
      ],
    ),
    ("mobilenet_v4_conv_small", ["MNv4 paper | 0.186 / 0.2G | 3.774 / 3.8M | ok"]),
    ("mobilenet_v4_conv_medium", ["MNv4 paper | 1.080 / 1G | 9.716 / 9.2M | ⚠ the MNv4 paper"]),
  ],
)
def test_profile_prints_the_published_rows_with_their_check(name, expected):
  table = profile_report.published_lines(load_config(name))[-1].splitlines()[2:]
  rows = [" | ".join(c.strip() for c in line.split("|")[1:-1]) for line in table]
  assert [row[: len(e)] for row, e in zip(rows, expected)] == expected and len(rows) == len(
    expected
  )


@needs_artifacts("slim_checkpoints.csv", root=SHARED / "reference")
def test_slims_int8_v1_cells_are_the_csvs_2018_02_22_quant_rows():
  with open(SLIM_CSV) as f:
    rows = [r for r in csv.DictReader(f) if r["version"] == "v1_quant_2018_02_22"]
  assert len(rows) == 16 and paper.SLIM_V1_INT8 == {
    (float(r["width"]), int(r["resolution"])): float(r["top1"]) for r in rows
  }
  assert paper.find("mobilenet_v1", 1.0, 224).slim.int8_top1 == 69.7  # float 70.9
