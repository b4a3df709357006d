"""Every conv implementation computes the same outputs and gradients from the same parameters."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mobilenet_jax.models import convolutions, layers, mobilenet
from tests.helpers import every_block_type

# Whole-model comparisons of the two convolution implementations: not the fast tier.
pytestmark = pytest.mark.slow


def normal(seed, shape):
  """Standard-normal test inputs from numpy: jax.random would compile a sampler per shape."""
  return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


@functools.partial(jax.jit, static_argnums=(0, 3))
def outputs_and_grads(conv, x, kernel, stride):
  """The conv's outputs, and the gradients of a nonlinear loss of them by input and kernel;
  jitted, so that each comparison compiles once instead of dispatching op by op."""
  loss = lambda x, kernel: jnp.sum(jnp.sin(conv(x, kernel, stride)))
  return conv(x, kernel, stride), jax.grad(loss, (0, 1))(x, kernel)


def assert_same_as_xla(conv, x, kernel, stride, outputs_tol, grads_tol):
  (outputs, grads), (xla_outputs, xla_grads) = (
    outputs_and_grads(c, x, kernel, stride) for c in (conv, convolutions.conv_xla)
  )
  np.testing.assert_allclose(outputs, xla_outputs, rtol=outputs_tol, atol=outputs_tol)
  for grad, xla_grad in zip(grads, xla_grads):
    np.testing.assert_allclose(grad, xla_grad, rtol=grads_tol, atol=grads_tol)


@pytest.mark.parametrize(
  "shape,k",
  [
    ((2, 9, 9, 5), 3),
    ((2, 8, 8, 5), 3),
    ((1, 7, 10, 3), 3),
    ((2, 4, 4, 6), 3),
    ((2, 9, 9, 4), 5),
    ((1, 8, 10, 3), 5),
  ],
)
@pytest.mark.parametrize("stride", [1, 2])
def test_depthwise_shifted_matches_xla(shape, k, stride):
  x = normal(0, shape)
  kernel = normal(1, (k, k, 1, shape[-1]))
  assert_same_as_xla(convolutions.depthwise_shifted, x, kernel, stride, 1e-5, 1e-4)


@pytest.mark.parametrize("stride", [1, 2])
def test_pointwise_matmul_matches_xla(stride):
  x = normal(0, (2, 7, 7, 8))
  kernel = normal(1, (1, 1, 8, 12))
  assert_same_as_xla(convolutions.pointwise_matmul, x, kernel, stride, 1e-5, 1e-4)


@pytest.mark.parametrize(
  "shape,stride", [((2, 9, 9, 3), 2), ((1, 8, 10, 3), 2), ((2, 7, 7, 3), 1), ((2, 8, 8, 8), 1)]
)
def test_conv_broadcast_matches_xla(shape, stride):
  """Broadcast multiply-adds up to MAX_BROADCAST_TERMS (3 input channels here), XLA's convolution
  past it (8); either way the same outputs, and XLA's convolution's own gradients."""
  x = normal(0, shape)
  kernel = normal(1, (3, 3, shape[-1], 6))
  jaxpr = str(jax.make_jaxpr(convolutions.conv_broadcast, static_argnums=2)(x, kernel, stride))
  assert ("conv_general_dilated" in jaxpr) == (9 * shape[-1] > convolutions.MAX_BROADCAST_TERMS)
  assert_same_as_xla(convolutions.conv_broadcast, x, kernel, stride, 1e-5, 1e-6)


def test_whole_model_same_parameters_and_logits():
  """Same parameter tree and the same logits (training-mode BN included) for both, on a model
  with a row of every block type (V1's and V2's among them)."""
  config = every_block_type()
  config.resolution = 64
  x = normal(0, (4, 64, 64, 3))
  models_by_impl = {
    impl: mobilenet.build_model(config, conv_impl=impl) for impl in ("xla", "shifted")
  }
  # Both initialised in one compile, and applied in another: each is compiled once.
  variables = jax.jit(
    lambda key, x: {impl: model.init(key, x) for impl, model in models_by_impl.items()},
    compiler_options=mobilenet.INIT_COMPILER_OPTIONS,
  )(jax.random.key(1), x)
  logits = jax.jit(
    lambda variables, x: {
      impl: model.apply(
        variables[impl], x, train=True, mutable=["batch_stats"], rngs={"dropout": jax.random.key(2)}
      )[0]
      for impl, model in models_by_impl.items()
    }
  )(variables, x)
  assert jax.tree.structure(variables["xla"]) == jax.tree.structure(variables["shifted"])
  for a, b in zip(jax.tree.leaves(variables["xla"]), jax.tree.leaves(variables["shifted"])):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_allclose(logits["xla"], logits["shifted"], rtol=1e-4, atol=1e-4)


def test_auto_picks_by_backend():
  assert convolutions.resolve_conv_impl("auto", "cpu") == "shifted"
  assert convolutions.resolve_conv_impl("auto", "gpu") == "xla"
  assert convolutions.resolve_conv_impl("xla", "cpu") == "xla"


@pytest.mark.parametrize("activation", [None, "relu6"])
def test_batch_norm_activation_matches_flax(activation):
  """BatchNormActivation is nn.BatchNorm then the activation: same variables, outputs, gradients
  (input, scale, bias) and running statistics, in training and in inference."""
  act = layers.ACTIVATIONS.get(activation)
  x = 3.0 * normal(0, (4, 6, 5, 7)) + 1.0
  ours = layers.BatchNormActivation(activation=act, momentum=0.9, epsilon=1e-3)
  reference = nn.BatchNorm(momentum=0.9, epsilon=1e-3)
  variables = ours.init(jax.random.key(1), x, train=False)
  assert jax.tree.map(jnp.shape, variables) == jax.tree.map(
    jnp.shape, reference.init(jax.random.key(1), x, use_running_average=True)
  )
  variables = {
    "params": {"scale": jnp.linspace(0.5, 2.0, 7), "bias": jnp.linspace(-1.0, 1.0, 7)},
    "batch_stats": {"mean": jnp.linspace(0.0, 1.0, 7), "var": jnp.linspace(1.0, 3.0, 7)},
  }
  activate = act or (lambda y: y)

  def apply_ours(v, x, train):
    return ours.apply(v, x, train, mutable=["batch_stats"])

  def apply_reference(v, x, train):
    y, updates = reference.apply(v, x, use_running_average=not train, mutable=["batch_stats"])
    return activate(y), updates

  for train in (True, False):

    def loss(apply):
      def fn(params, x):
        y, updates = apply({"params": params, "batch_stats": variables["batch_stats"]}, x, train)
        return jnp.sum(jnp.sin(3.0 * y)), (y, updates["batch_stats"])

      return jax.jit(jax.grad(fn, (0, 1), has_aux=True))(variables["params"], x)

    (grads, (y, stats)), (grads_ref, (y_ref, stats_ref)) = loss(apply_ours), loss(apply_reference)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(jax.tree.leaves((grads, stats)), jax.tree.leaves((grads_ref, stats_ref))):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
