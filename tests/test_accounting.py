"""Mult-add and parameter counts against the numbers the papers print."""

import math

import pytest

from mobilenet_jax.counting import accounting, paper
from tests.helpers import load_config


def counts(name, arg=None):
  return accounting.profile(load_config(name, arg))


def printed_millions(exact, printed):
  """The paper mostly rounds (568.74M -> 569) but sometimes truncates (290.68M -> 290)."""
  return printed in (round(exact / 1e6), math.floor(exact / 1e6))


def test_v1_1_0_224_exact():
  p = counts("mobilenet_v1")
  assert (p.madds, p.params) == (568_740_352, 4_210_088)
  # Kernels plus the FC bias; BN reported apart: 10,944 channels x (scale, offset).
  assert (p.bn_params, p.bn_stats) == (21_888, 21_888)


@pytest.mark.slow
@pytest.mark.parametrize(
  "width,madds_m,params_m", [(1.0, 569, 4.2), (0.75, 325, 2.6), (0.5, 149, 1.3), (0.25, 41, 0.5)]
)
def test_v1_table6_width_multiplier(width, madds_m, params_m):
  p = counts("mobilenet_v1", f"width={width}")
  assert printed_millions(p.madds, madds_m)
  assert round(p.params / 1e6, 1) == params_m


@pytest.mark.parametrize(
  "res,madds_m,exact",
  [
    (224, 569, 568_740_352),
    (192, 418, 418_121_728),
    (160, 290, 290_675_200),
    (128, 186, 186_400_768),
  ],
)
def test_v1_table7_resolution(res, madds_m, exact):
  p = counts("mobilenet_v1", f"res={res}")
  assert p.madds == exact and printed_millions(p.madds, madds_m)
  assert round(p.params / 1e6, 1) == 4.2


def test_v1_table9_0_50_160():
  p = counts("mobilenet_v1", "width=0.5,res=160")
  assert p.madds == 76_524_800 and printed_millions(p.madds, 76)
  assert round(p.params / 1e6, 2) == 1.32


def test_v1_table2_breakdown():
  by_type = counts("mobilenet_v1").by_type()
  total_madds = sum(m for m, _ in by_type.values())
  total_kernels = sum(k for _, k in by_type.values())
  measured = {
    t: (round(100 * m / total_madds, 2), round(100 * k / total_kernels, 2))
    for t, (m, k) in by_type.items()
  }
  assert measured == paper.V1_TABLE2


def test_conv_mobilenet_table4():
  p = counts("mobilenet_v1_conv")
  assert (p.madds, p.params) == (4_867_293_184, 29_282_120)
  assert (round(p.madds / 1e6), round(p.params / 1e6, 1)) == (4867, 29.3)  # printed 4866M


def test_shallow_mobilenet_table5():
  p = counts("mobilenet_v1_shallow")
  assert (p.madds, p.params) == (307_323_392, 2_876_328)
  assert (round(p.madds / 1e6), round(p.params / 1e6, 1)) == (307, 2.9)


def test_v2_1_0_224_exact():
  p = counts("mobilenet_v2")
  assert (p.madds, p.params) == (300_774_272, 3_470_760)
  # torchvision / Keras trainable count = params + BN scale/offset.
  assert p.params + p.bn_params == 3_504_872


@pytest.mark.slow
def test_per_block_rows_sum_to_totals():
  p = counts("mobilenet_v2", "width=0.75,res=160")
  assert sum(b.madds for b in p.blocks) == p.madds
  assert sum(b.params for b in p.blocks) == p.params
  assert [b.name for b in p.blocks][-2:] == ["head", "classifier"]


@pytest.mark.slow
def test_conv_impl_does_not_change_counts():
  config = load_config("mobilenet_v2", "width=0.5,res=96")
  config.model.conv_impl = "shifted"
  assert accounting.profile(config).madds == counts("mobilenet_v2", "width=0.5,res=96").madds


@pytest.mark.slow
@pytest.mark.parametrize(
  "name,madds,params,bn_params",
  [
    ("mobilenet_v3_large", 216_589_760, 5_458_632, 24_400),
    ("mobilenet_v3_small", 56_510_400, 2_530_744, 12_112),
    ("mobilenet_v4_conv_small", 186_005_568, 3_748_936, 25_088),
    ("mobilenet_v4_conv_medium", 1_080_244_224, 9_647_608, 67_904),
  ],
)
def test_v3_and_v4_exact(name, madds, params, bn_params):
  """SE's two 1x1 convs on the pooled features and the conv after the pool count as fully
  connected layers; h-swish and the SE gate, like every activation, count nothing."""
  p = counts(name)
  assert (p.madds, p.params, p.bn_params) == (madds, params, bn_params)
  assert any(row.name == "pooled_head" for row in p.blocks)
