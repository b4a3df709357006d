"""Numbers printed in the papers, as data (see ../shared/reference/papers.md for the sources)."""

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
  return (config.model.name == "mobilenet_v1" and config.model.width_multiplier == 1.0
          and config.resolution == 224)
