"""The expected-results registry against the model zoo's counter: every published cell."""

import pytest

from mobilenet_jax import paper
from tests.conftest import load_config


def test_grid_has_the_papers_cells():
  v1 = [(c.width_multiplier, c.resolution) for c in paper.GRID if c.arch == "mobilenet_v1"]
  v2 = [(c.width_multiplier, c.resolution) for c in paper.GRID if c.arch == "mobilenet_v2"]
  assert sorted(v1) == sorted((a, r) for a in (1.0, 0.75, 0.5, 0.25) for r in (224, 192, 160, 128))
  assert sorted(v2) == sorted([(a, r) for a in (1.0, 0.75, 0.5, 0.35)
                               for r in (224, 192, 160, 128, 96)] + [(1.4, 224), (1.3, 224)])


@pytest.mark.parametrize("cell", paper.GRID + paper.V3 + paper.MNV4,
                         ids=lambda c: c.name.replace(" ", "_"))
def test_published_counts_agree_with_the_counter_except_where_flagged(cell):
  config = load_config(cell.arch, f"width={cell.width_multiplier},res={cell.resolution}")
  for published in filter(None, (cell.paper, cell.slim)):
    madds, params = paper.count_as(config, published.source)
    assert published.agrees_with(madds, params) == (not published.mismatch), (published, madds,
                                                                               params)


@pytest.mark.parametrize("name", sorted(paper.ABLATIONS))
def test_ablation_counts_agree(name):
  published = paper.ABLATIONS[name]
  madds, params = paper.count_as(load_config(name), published.source)
  assert published.agrees_with(madds, params) == (not published.mismatch), (published, madds,
                                                                             params)


def test_agrees_reads_printed_precision_rounded_or_truncated():
  assert paper.agrees(290_675_200, 290) and paper.agrees(290_675_200, 291)
  assert not paper.agrees(290_675_200, 292)
  assert paper.agrees(3_472_041, 3.47) and not paper.agrees(3_472_041, 3.6)
  assert paper.agrees(1_320_648, 1.32) and paper.agrees(4_210_088, 4.2)
