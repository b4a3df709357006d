"""Published numbers, as data: the papers' tables and the TF-slim releases' checkpoint tables.

Sources: V1 = Howard et al. 2017 (arXiv 1704.04861), Tables 2 and 4-9; V2 = Sandler et al.
2018 (arXiv 1801.04381), Table 4; V3 = Howard et al. 2019 (arXiv 1905.02244), Table 3; MNv4 =
Qin et al. 2024 (arXiv 2404.10518); slim V1 = tensorflow/models
research/slim/nets/mobilenet_v1.md (the 2018_02_22 release); slim V2 and V3 =
research/slim/nets/mobilenet/README.md. Mult-adds and params are in millions as printed.

Every report and test compares against `GRID`, `V3`, `MNV4` and `ABLATIONS`; nothing else holds
these numbers.
"""

import dataclasses
import math

from mobilenet_jax.counting import accounting

UNITS = {"M": 1e6, "G": 1e9}

# V1 Table 2, "Resource Per Layer Type" of 1.0 MobileNet-224: {layer type: (% mult-adds,
# % parameters)}, parameters counting kernels only. The paper prints 1.19% for the full 3x3
# conv's mult-adds; the four rows only sum to 100% with 1.91%, so that is a transposition.
V1_TABLE2 = {
  "conv 1x1": (94.86, 74.59),
  "depthwise 3x3": (3.06, 1.06),
  "conv 3x3": (1.91, 0.02),
  "fully connected": (0.18, 24.33),
}
V1_TABLE2_PRINTED_CONV3X3_MADDS = 1.19


def table2_applies(config):
  """Table 2 describes exactly V1 at alpha 1.0, 224 pixels."""
  return (
    config.model.name == "mobilenet_v1"
    and config.model.width_multiplier == 1.0
    and config.resolution == 224
  )


@dataclasses.dataclass(frozen=True)
class Published:
  """One source's printed row: top-1/top-5 in %, mult-adds and params in millions."""

  source: str
  top1: float
  madds: float | None = None
  params: float | None = None
  top5: float | None = None
  table: str = ""
  # Where the printed mult-adds or params disagree with the architecture the source itself
  # describes (found by counting the traced model; asserted in tests/test_paper.py).
  mismatch: str = ""
  madds_unit: str = "M"  # the MNv4 paper prints G
  int8_top1: float | None = None  # the same release's quantization-aware int8 checkpoint's

  @property
  def madds_count(self):
    return self.madds * UNITS[self.madds_unit] if self.madds is not None else None

  def agrees_with(self, madds, params):
    """Whether counted mult-adds and params are what this row prints."""
    return agrees(madds, self.madds, UNITS[self.madds_unit]) and agrees(params, self.params)


@dataclasses.dataclass(frozen=True)
class Cell:
  """One model of a published grid, with every source that prints it."""

  arch: str
  width_multiplier: float
  resolution: int
  paper: Published | None
  slim: Published | None = None

  @property
  def name(self):
    return f"{self.arch} {self.width_multiplier:g}-{self.resolution}"


def _cell(arch, paper_source, slim_source, slim_int8=None):
  def make(alpha, res, slim, paper=None, slim_mismatch="", paper_mismatch=""):
    top1, top5, madds, params = slim
    return Cell(
      arch,
      alpha,
      res,
      Published(paper_source, *paper, mismatch=paper_mismatch) if paper else None,
      Published(
        slim_source,
        top1,
        madds,
        params,
        top5,
        mismatch=slim_mismatch,
        int8_top1=(slim_int8 or {}).get((alpha, res)),
      ),
    )

  return make


# TF-slim V1's 2018_02_22 quantization-aware int8 checkpoints, top-1 by (alpha, resolution):
# mobilenet_v1.md's quant rows (../shared/reference/slim_checkpoints.csv, v1_quant_2018_02_22).
SLIM_V1_INT8 = {
  (alpha, res): top1
  for alpha, row in (
    (1.0, (69.7, 69.0, 67.3, 64.0)),
    (0.75, (67.9, 66.2, 63.9, 59.8)),
    (0.5, (62.2, 60.4, 57.7, 54.9)),
    (0.25, (48.2, 45.8, 43.5, 39.9)),
  )
  for res, top1 in zip((224, 192, 160, 128), row)
}
_v1 = _cell("mobilenet_v1", "V1 paper", "TF-slim 2018_02_22", SLIM_V1_INT8)
_v2 = _cell("mobilenet_v2", "V2 paper", "TF-slim")


_V1_075 = (
  "TF-slim prints {} M mult-adds for alpha 0.75, below the architecture's count; the "
  "V1 paper's 325 M for 0.75-224 agrees with the count"
)

# V1 Figures 4-5: alpha x resolution. Paper rows: (top-1, M mult-adds, M params, None, table).
GRID = (
  _v1(1.0, 224, (70.9, 89.9, 569, 4.24), (70.6, 569, 4.2, None, "Tables 6, 7")),
  _v1(1.0, 192, (70.0, 89.2, 418, 4.24), (69.1, 418, 4.2, None, "Table 7")),
  _v1(1.0, 160, (68.0, 87.7, 291, 4.24), (67.2, 290, 4.2, None, "Table 7")),
  _v1(1.0, 128, (65.2, 85.8, 186, 4.24), (64.4, 186, 4.2, None, "Table 7")),
  _v1(
    0.75,
    224,
    (68.4, 88.2, 317, 2.59),
    (68.4, 325, 2.6, None, "Tables 5, 6"),
    slim_mismatch=_V1_075.format(317),
  ),
  _v1(0.75, 192, (67.2, 87.3, 233, 2.59), slim_mismatch=_V1_075.format(233)),
  _v1(0.75, 160, (65.3, 86.0, 162, 2.59), slim_mismatch=_V1_075.format(162)),
  _v1(0.75, 128, (62.1, 83.9, 104, 2.59), slim_mismatch=_V1_075.format(104)),
  _v1(
    0.5,
    224,
    (63.3, 84.9, 150, 1.34),
    (63.7, 149, 1.3, None, "Table 6"),
    slim_mismatch="TF-slim prints 150 M mult-adds for 0.5-224; the architecture has "
    "149.498 M, which neither rounds nor truncates to 150 (the paper's 149 "
    "agrees)",
  ),
  _v1(0.5, 192, (61.7, 83.6, 110, 1.34)),
  _v1(0.5, 160, (59.1, 81.9, 77, 1.34), (60.2, 76, 1.32, None, "Table 9")),
  _v1(0.5, 128, (56.3, 79.4, 49, 1.34)),
  _v1(0.25, 224, (49.8, 74.2, 41, 0.47), (50.6, 41, 0.5, None, "Table 6")),
  _v1(
    0.25,
    192,
    (47.7, 72.3, 34, 0.47),
    slim_mismatch="TF-slim prints 34 M mult-adds for 0.25-192; the architecture has 30.2 M",
  ),
  _v1(0.25, 160, (45.5, 70.3, 21, 0.47)),
  _v1(0.25, 128, (41.5, 66.3, 14, 0.47)),
  # V2 Figure 5: alpha in {0.35, 0.5, 0.75, 1.0} x resolution 96-224, plus 1.4 at 224.
  _v2(
    1.4,
    224,
    (75.0, 92.5, 582, 6.06),
    (74.7, 585, 6.9, None, "Table 4"),
    paper_mismatch="the V2 paper prints 585 M mult-adds and 6.9 M params for 1.4-224; the "
    "architecture (and TF-slim) has 582 M and 6.06 M",
  ),
  # TF-slim also released 1.3-224 (not in the paper's figure): the registry's 22nd V2 cell.
  _v2(1.3, 224, (74.4, 92.1, 509, 5.34)),
  _v2(1.0, 224, (71.8, 91.0, 300, 3.47), (72.0, 300, 3.4, None, "Table 4")),
  _v2(1.0, 192, (70.7, 90.1, 221, 3.47)),
  _v2(1.0, 160, (68.8, 89.0, 154, 3.47)),
  _v2(1.0, 128, (65.3, 86.9, 99, 3.47)),
  _v2(1.0, 96, (60.3, 83.2, 56, 3.47)),
  _v2(0.75, 224, (69.8, 89.6, 209, 2.61)),
  _v2(0.75, 192, (68.7, 88.9, 153, 2.61)),
  _v2(0.75, 160, (66.4, 87.3, 107, 2.61)),
  _v2(0.75, 128, (63.2, 85.3, 69, 2.61)),
  _v2(0.75, 96, (58.8, 81.6, 39, 2.61)),
  _v2(0.5, 224, (65.4, 86.4, 97, 1.95)),
  _v2(0.5, 192, (63.9, 85.4, 71, 1.95)),
  _v2(0.5, 160, (61.0, 83.2, 50, 1.95)),
  _v2(0.5, 128, (57.7, 80.8, 32, 1.95)),
  _v2(0.5, 96, (51.2, 75.8, 18, 1.95)),
  _v2(0.35, 224, (60.3, 82.9, 59, 1.66)),
  _v2(0.35, 192, (58.2, 81.2, 43, 1.66)),
  _v2(0.35, 160, (55.7, 79.1, 30, 1.66)),
  _v2(0.35, 128, (50.8, 75.0, 20, 1.66)),
  _v2(0.35, 96, (45.5, 70.4, 11, 1.66)),
)

_v3_large = _cell("mobilenet_v3_large", "V3 paper", "TF-slim")
_v3_small = _cell("mobilenet_v3_small", "V3 paper", "TF-slim")
_V3_LARGE_219 = (
  "the V3 paper prints 219 M mult-adds for Large 1.0-224; its Table 1 (and "
  "TF-slim's V3_LARGE, whose README prints 217 M) has 216.6 M"
)
_V3_SMALL_SLIM = (
  "TF-slim's README prints {} for Small {}; its own V3_SMALL has {} (the paper "
  "prints 56 M and 2.5 M for 1.0)"
)

# V3 (Howard et al. 2019, Table 3) and TF-slim's V3 README; paper rows at 1.0 only. TF-slim's
# 0.75 models keep the 1280 / 1024 conv after the pool (config.model.pooled_head_channels).
V3 = (
  _v3_large(
    1.0,
    224,
    (75.2, None, 217, 5.4),
    (75.2, 219, 5.4, None, "Table 3"),
    paper_mismatch=_V3_LARGE_219,
  ),
  _v3_large(0.75, 224, (73.3, None, 155, 4.0)),
  _v3_small(
    1.0,
    224,
    (67.5, None, 66, 2.9),
    (67.4, 56, 2.5, None, "Table 3"),
    slim_mismatch=_V3_SMALL_SLIM.format("66 M and 2.9 M", "1.0", "56.5 M and 2.53 M"),
  ),
  _v3_small(
    0.75,
    224,
    (65.4, None, 44, 2.4),
    slim_mismatch=_V3_SMALL_SLIM.format("44 M and 2.4 M", "0.75", "43.4 M and 2.03 M"),
  ),
)

# MNv4 (Qin et al. 2024), its conv models; the paper prints mult-adds in G and counts
# BN scale and offset as parameters.
MNV4 = (
  Cell(
    "mobilenet_v4_conv_small", 1.0, 224, Published("MNv4 paper", 73.8, 0.2, 3.8, madds_unit="G")
  ),
  Cell(
    "mobilenet_v4_conv_medium",
    1.0,
    256,
    Published(
      "MNv4 paper",
      79.9,
      1.0,
      9.2,
      madds_unit="G",
      mismatch="the MNv4 paper prints 9.2 M params for Conv-M; its architecture "
      "has 9.72 M (as timm counts it), 1.08 G mult-adds at 256 px",
    ),
  ),
)

# timm 1.0.31's own MNv4 retrains (results-imagenet.csv; its params count BN scale and offset,
# its GMACs are at the weights' resolution): the new MNv4 configs at timm's resolutions.
_TIMM_GMACS = (
  "timm prints {} G; the paper convention counts {} G: timm's profiler counts more than the "
  "convolutions', dense layers' and attention matmuls' multiply-adds (Conv-L, with no "
  "attention, is 0.9% above too)"
)
TIMM_MNV4 = (
  Cell(
    "mobilenet_v4_conv_large",
    1.0,
    256,
    Published(
      "timm", 81.864, 2.86, 32.59, madds_unit="G", mismatch=_TIMM_GMACS.format(2.86, 2.835)
    ),
  ),
  Cell(
    "mobilenet_v4_hybrid_medium",
    1.0,
    224,
    Published(
      "timm", 80.432, 0.98, 11.07, madds_unit="G", mismatch=_TIMM_GMACS.format(0.98, 0.966)
    ),
  ),
  Cell(
    "mobilenet_v4_hybrid_large",
    1.0,
    384,
    Published(
      "timm", 83.996, 7.77, 37.76, madds_unit="G", mismatch=_TIMM_GMACS.format(7.77, 7.712)
    ),
  ),
)

# V1 Tables 4 and 5: architecture ablations at 224, keyed by config model name.
ABLATIONS = {
  "mobilenet_v1_conv": Published(
    "V1 paper",
    71.7,
    4866,
    29.3,
    table="Table 4",
    mismatch="the paper prints 4866 M mult-adds for Conv MobileNet; Table 1 with every "
    "separable block made a full 3x3 conv has 4867.3 M",
  ),
  "mobilenet_v1_shallow": Published("V1 paper", 65.3, 307, 2.9, table="Table 5"),
}

# How each source counts, so the counter can be compared with it (verified for every cell):
# classes in the classifier, and whether BN variables are in the parameter count. TF-slim V1's
# BN has no scale (gamma), so its checkpoint variables add beta, mean and variance per channel.
CONVENTIONS = {
  "V1 paper": {"num_classes": 1000, "bn_variables_per_channel": 0},
  "V2 paper": {"num_classes": 1000, "bn_variables_per_channel": 0},
  "TF-slim 2018_02_22": {"num_classes": 1001, "bn_variables_per_channel": 3},
  "TF-slim": {"num_classes": 1001, "bn_variables_per_channel": 0},
  "V3 paper": {"num_classes": 1000, "bn_variables_per_channel": 0},
  "MNv4 paper": {"num_classes": 1000, "bn_variables_per_channel": 2},
  "timm": {"num_classes": 1000, "bn_variables_per_channel": 2},
}


def find(arch, width_multiplier, resolution):
  """The published grid cell for a model, or None."""
  for cell in GRID + V3 + MNV4 + TIMM_MNV4:
    if (cell.arch, cell.width_multiplier, cell.resolution) == (arch, width_multiplier, resolution):
      return cell
  return None


def agrees(count, printed, unit=1e6):
  """Whether an exact count (in units) is what a source printed (in millions, or `unit`), read
  with the printed number of decimals and either convention the sources use: rounded or
  truncated."""
  if printed is None:
    return True
  decimals = len(repr(float(printed)).split(".")[1].rstrip("0")) if printed % 1 else 0
  millions = count / unit
  scale = 10**decimals
  return printed in (round(millions, decimals), math.floor(millions * scale) / scale)


def count_as(config, source):
  """(mult-adds, params) of the config's model, counted the way `source` prints them."""
  convention = CONVENTIONS[source]
  config = config.copy_and_resolve_references()
  config.model.num_classes = convention["num_classes"]
  counts = accounting.profile(config)
  bn_channels = counts.bn_params // 2  # scale and offset per channel
  return counts.madds, counts.params + convention["bn_variables_per_channel"] * bn_channels
