"""Shapes, channel counts and initialisation of the config-built models."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mobilenet_jax.models import blocks, layers, mobilenet
from mobilenet_jax.models.convolutions import same_padding
from tests.helpers import every_block_type, load_config


def features(config, batch=2):
  # Traced with XLA's convolutions, a few ops each instead of k*k windows: the shapes are the
  # same for every implementation (test_conv_impls.py), and tracing takes half the time.
  model = mobilenet.build_model(config, conv_impl="xla")
  x = jax.ShapeDtypeStruct(mobilenet.input_shape(config, batch), jnp.float32)
  logits, variables = jax.eval_shape(
    lambda key, x: model.init_with_output(key, x, mutable=True), jax.random.key(0), x
  )
  return logits, variables["intermediates"]["features"]


@pytest.mark.parametrize("arch", ["mobilenet_v1", "mobilenet_v2"])
@pytest.mark.parametrize("width", [0.25, 0.35, 0.5, 0.75, 1.0, 1.4])
@pytest.mark.parametrize("res", [96, 128, 160, 192, 224])
def test_output_shapes(arch, width, res):
  config = load_config(arch, f"width={width},res={res}")
  logits, feats = features(config)
  assert logits.shape == (2, 1000)
  side = -(-res // 32)
  assert feats[-1].shape[:3] == (2, side, side)


# TF-slim V2 channels (stem, the seven bottleneck groups, head), derived by hand from
# make_divisible(c * alpha, 8) with the 10% guard, and 1280 kept for alpha <= 1.
V2_CHANNELS = {
  0.35: (16, 8, 8, 16, 24, 32, 56, 112, 1280),
  0.5: (16, 8, 16, 16, 32, 48, 80, 160, 1280),
  0.75: (24, 16, 24, 24, 48, 72, 120, 240, 1280),
  1.0: (32, 16, 24, 32, 64, 96, 160, 320, 1280),
  1.4: (48, 24, 32, 48, 88, 136, 224, 448, 1792),
}


@pytest.mark.parametrize("width", sorted(V2_CHANNELS))
def test_v2_channels_follow_make_divisible(width):
  config = load_config("mobilenet_v2", f"width={width}")
  plan = mobilenet.build_plan(config.model)
  group_ends = [0, 1, 3, 6, 10, 13, 16, 17]
  channels = tuple(plan[i].out_channels for i in group_ends) + (
    mobilenet.head_channels(config.model),
  )
  assert channels == V2_CHANNELS[width]
  for block in plan[2:]:
    assert block.hidden_channels == 6 * block.in_channels
  assert plan[1].hidden_channels == plan[1].in_channels  # t = 1: no expand conv


def test_v2_residuals_and_expand_layers():
  model = mobilenet.build_model(load_config("mobilenet_v2"))
  x = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)
  params = jax.eval_shape(model.init, jax.random.key(0), x)["params"]
  assert "expand" not in params["block_01"] and "expand" in params["block_02"]
  assert params["block_02"]["depthwise"]["conv"]["kernel"].shape == (3, 3, 1, 96)
  assert params["block_17"]["project"]["conv"]["kernel"].shape == (1, 1, 960, 320)
  assert params["head"]["conv"]["kernel"].shape == (1, 1, 320, 1280)


def test_v1_truncates_channels_like_tf_slim():
  plan = mobilenet.build_plan(load_config("mobilenet_v1", "width=0.35").model)
  # max(int(c * 0.35), 8): 32 -> 11, 64 -> 22, 1024 -> 358 (no rounding to multiples of 8).
  assert [b.out_channels for b in plan][:3] == [11, 22, 44]
  assert plan[-1].out_channels == 358


def test_make_divisible():
  assert blocks.make_divisible(18) == 24  # 16 would be > 10% below 18
  assert blocks.make_divisible(11.2) == 16
  assert blocks.make_divisible(3) == 8
  assert blocks.make_divisible(1792) == 1792


def test_tf_same_padding_is_asymmetric_for_stride_2():
  assert same_padding(224, 3, 2) == (112, (0, 1))
  assert same_padding(7, 3, 2) == (4, (1, 1))
  assert same_padding(56, 3, 1) == (56, (1, 1))


def _kernels_by_kind(params):
  """{'full conv' | 'depthwise' | 'pointwise' | 'dense': [kernel, ...]} of a params tree."""
  kinds = {}
  for path, kernel in jax.tree_util.tree_flatten_with_path(params)[0]:
    name = jax.tree_util.keystr(path, simple=True, separator="/")
    if not name.endswith("kernel"):
      continue
    kind = (
      "dense"
      if kernel.ndim == 2
      else "depthwise"
      if "depthwise/" in name
      else "pointwise"
      if kernel.shape[0] == 1
      else "full conv"
    )
    kinds.setdefault(kind, []).append(np.asarray(kernel))
  return kinds


# The standard deviation of N(0, 1) truncated to [-2, 2], as TF-slim's initializer draws it.
TRUNCATED_STD = 0.8796256610342398
# Intended stddev of an HWIO kernel (k, k, C_in or 1, C_out) or a dense (C_in, C_out) kernel.
INTENDED_STD = {
  "he_fan_out": {
    "full conv": lambda k: np.sqrt(2 / (9 * k.shape[3])),
    "depthwise": lambda k: np.sqrt(2 / (9 * k.shape[3])),
    "pointwise": lambda k: np.sqrt(2 / k.shape[3]),
    "dense": lambda k: 0.01,
  },
  "slim": dict.fromkeys(
    ("full conv", "depthwise", "pointwise", "dense"), lambda k: 0.09 * TRUNCATED_STD
  ),
  "he_fan_in": {
    "full conv": lambda k: np.sqrt(2 / (9 * k.shape[2])),
    "depthwise": lambda k: np.sqrt(2 / 9),
    "pointwise": lambda k: np.sqrt(2 / k.shape[2]),
    "dense": lambda k: 0.01,
  },
}


@functools.cache
def v1_params_by_kernel_init():
  """V1's initial parameters under each kernel_init, in one compile: the three draw the same
  random bits, which XLA computes once."""
  config = load_config("mobilenet_v1", "res=32")
  inits = {}
  for kernel_init in INTENDED_STD:
    config.model.kernel_init = kernel_init
    inits[kernel_init] = mobilenet.build_model(config).init
  return jax.jit(
    lambda key, x: {name: init(key, x)["params"] for name, init in inits.items()},
    compiler_options=mobilenet.INIT_COMPILER_OPTIONS,
  )(jax.random.key(0), jnp.zeros(mobilenet.input_shape(config)))


@pytest.mark.slow
@pytest.mark.parametrize("kernel_init", sorted(INTENDED_STD))
def test_kernel_init_gives_the_intended_std_per_kernel_kind(kernel_init):
  kinds = _kernels_by_kind(v1_params_by_kernel_init()[kernel_init])
  assert {kind: len(kernels) for kind, kernels in kinds.items()} == {
    "full conv": 1,
    "depthwise": 13,
    "pointwise": 13,
    "dense": 1,
  }
  for kind, kernels in kinds.items():
    for kernel in kernels:
      # The sample stddev of n draws is within 6 / sqrt(2n) of the true one (relative).
      assert kernel.std() == pytest.approx(
        INTENDED_STD[kernel_init][kind](kernel), rel=6 / np.sqrt(2 * kernel.size)
      ), (kind, kernel.shape)
      assert abs(kernel.mean()) < 6 * kernel.std() / np.sqrt(kernel.size)


def test_presets_state_their_kernel_init():
  assert load_config("mobilenet_v2").model.kernel_init == "slim"  # paper_v2: TF-slim's
  assert load_config("mobilenet_v1", "preset=paper_v1").model.kernel_init == "slim"
  assert load_config("mobilenet_v2", "preset=modern").model.kernel_init == "he_fan_out"
  assert load_config("mobilenet_v2", "preset=short").model.kernel_init == "he_fan_out"


def init_params(config):
  model = mobilenet.build_model(config)
  x = jax.ShapeDtypeStruct(mobilenet.input_shape(config), jnp.float32)
  return jax.eval_shape(model.init, jax.random.key(0), x)["params"]


@pytest.mark.slow
def test_v3_large_blocks_follow_table_1():
  config = load_config("mobilenet_v3_large")
  plan = mobilenet.build_plan(config.model)
  # Table 1's exp size, #out, SE, NL and s columns for its fifteen bneck rows.
  assert [b.hidden_channels for b in plan[1:16]] == [
    16,
    64,
    72,
    72,
    120,
    120,
    240,
    200,
    184,
    184,
    480,
    672,
    672,
    960,
    960,
  ]
  assert [b.out_channels for b in plan[1:16]] == [
    16,
    24,
    24,
    40,
    40,
    40,
    80,
    80,
    80,
    80,
    112,
    112,
    160,
    160,
    160,
  ]
  assert [b.se > 0 for b in plan[1:16]] == [False] * 3 + [True] * 3 + [False] * 4 + [True] * 5
  assert [b.act or config.model.activation for b in plan[1:16]] == (
    ["relu"] * 6 + ["hard_swish"] * 9
  )
  assert [b.kernel for b in plan[1:16]] == [3] * 3 + [5] * 3 + [3] * 6 + [5] * 3
  params = init_params(config)
  se = params["block_04"]["squeeze_excite"]
  # TF-slim's squeeze: make_divisible(72 / 4) = 24 channels, 1x1 convs with biases.
  assert se["reduce"]["kernel"].shape == (72, 24) and se["reduce"]["bias"].shape == (24,)
  assert se["expand"]["kernel"].shape == (24, 72) and se["expand"]["bias"].shape == (72,)
  assert params["block_16"]["conv_bn"]["conv"]["kernel"].shape == (1, 1, 160, 960)
  assert params["pooled_head"]["conv"]["kernel"].shape == (960, 1280)
  assert params["pooled_head"]["conv"]["bias"].shape == (1280,)  # V3: a bias, no BN
  assert "bn" not in params["pooled_head"]


def test_v3_activations_are_tf_slims():
  x = jnp.linspace(-5.0, 5.0, 101)
  np.testing.assert_allclose(
    layers.ACTIVATIONS["hard_swish"](x), x * np.clip(x + 3, 0, 6) / 6, rtol=1e-6, atol=1e-7
  )
  np.testing.assert_allclose(layers.hard_sigmoid(x), np.clip(x + 3, 0, 6) / 6, rtol=1e-6, atol=1e-7)


def test_v3_pooled_head_keeps_its_width_below_alpha_one():
  for width, head in ((0.75, 1280), (1.0, 1280), (1.25, 1600)):
    config = load_config("mobilenet_v3_large", f"width={width}")
    assert mobilenet.pooled_head_channels(config.model) == head


@pytest.mark.slow
def test_uib_variants_and_fused_ib_have_their_layers():
  params = init_params(load_config("mobilenet_v4_conv_medium", "res=224"))
  layer_names = lambda name: sorted(params[name])
  assert layer_names("block_01") == ["expand", "project"]  # Fused IB: full 3x3 expand
  assert params["block_01"]["expand"]["conv"]["kernel"].shape == (3, 3, 32, 128)
  # ExtraDW (3, 5): start depthwise on the 48 inputs, middle one on the expanded 192.
  assert layer_names("block_02") == ["depthwise", "expand", "project", "start_depthwise"]
  assert params["block_02"]["start_depthwise"]["conv"]["kernel"].shape == (3, 3, 1, 48)
  assert params["block_02"]["depthwise"]["conv"]["kernel"].shape == (5, 5, 1, 192)
  assert layer_names("block_09") == ["expand", "project", "start_depthwise"]  # ConvNext-like
  assert layer_names("block_10") == ["expand", "project"]  # FFN
  assert params["pooled_head"]["conv"]["kernel"].shape == (960, 1280)
  assert "bias" not in params["pooled_head"]["conv"] and "bn" in params["pooled_head"]


@pytest.mark.slow
def test_a_strided_uib_takes_the_stride_in_its_middle_depthwise():
  _, feats = features(load_config("mobilenet_v4_conv_small"))
  assert [f.shape[1] for f in feats] == [112, 56, 56, 28, 28] + [14] * 6 + [7] * 7


@pytest.mark.slow
def test_the_folded_model_computes_the_model_with_its_batch_norm_folded():
  config = every_block_type()  # MNv4's pooled head with its BN among them
  config.resolution = 64
  model = mobilenet.build_model(config, conv_impl="xla")
  rng = np.random.default_rng(1)
  images = rng.uniform(-1, 1, (4, 64, 64, 3)).astype(np.float32)
  variables = jax.device_get(
    jax.jit(model.init, compiler_options=mobilenet.INIT_COMPILER_OPTIONS)(jax.random.key(0), images)
  )
  # Trained-looking statistics and affine terms, so that folding has something to fold (numpy
  # draws and multiplies them: jax.random and jnp compile a program for every shape).
  variables = jax.tree.map(lambda x: x * rng.uniform(0.5, 1.5, x.shape).astype(x.dtype), variables)
  folded = layers.fold_batch_norm(variables, config.model.bn_epsilon)
  assert "batch_stats" not in folded
  assert (
    jax.tree.reduce(lambda n, x: n + x.size, folded["params"], 0)
    == jax.tree.reduce(lambda n, x: n + x.size, variables["params"], 0)
    - sum(x.size for x in jax.tree.leaves(variables["batch_stats"])) // 2
  )  # one vector per BN
  expected = jax.jit(model.apply)(variables, images)
  folded_model = mobilenet.build_model(config, conv_impl="xla", folded=True)
  logits = jax.jit(folded_model.apply)(folded, images)
  np.testing.assert_allclose(logits, expected, atol=1e-4 * float(jnp.abs(expected).max()))
  assert (logits.argmax(-1) == expected.argmax(-1)).all()
