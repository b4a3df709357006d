"""The train state, the one jitted train step and the eval step."""

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from mobilenet_jax.data import device_augment, pipeline
from mobilenet_jax.models import mobilenet
from mobilenet_jax.train import distill


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  ema_params: Any  # None without an EMA (config.training.ema_decay = 0)
  ema_batch_stats: Any


def abstract_params(model, config):
  return jax.eval_shape(model.init, jax.random.key(0), jnp.zeros(mobilenet.input_shape(config)))[
    "params"
  ]


def with_weights(state, config, params, batch_stats):
  """`state` holding these weights, and its EMA (when config.training.ema_decay keeps one)
  starting from a copy of them: outside jit, the same buffers twice could not be donated."""
  ema = config.training.ema_decay > 0
  return state.replace(
    params=params,
    batch_stats=batch_stats,
    ema_params=jax.tree.map(jnp.copy, params) if ema else None,
    ema_batch_stats=jax.tree.map(jnp.copy, batch_stats) if ema else None,
  )


def init_state(model, tx, config, rng):
  variables = model.init(rng, jnp.zeros(mobilenet.input_shape(config)))
  params = variables["params"]
  state = TrainState(
    step=jnp.zeros((), jnp.int32),
    params=None,
    batch_stats=None,
    opt_state=tx.init(params),
    ema_params=None,
    ema_batch_stats=None,
  )
  return with_weights(state, config, params, variables["batch_stats"])


def cross_entropy(logits, labels, num_classes, label_smoothing):
  targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), label_smoothing)
  return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)


def ema_update(ema, new, step, decay):
  """tf.train.ExponentialMovingAverage(decay, num_updates=step): decay ramps up early on."""
  rate = jnp.minimum(decay, (1.0 + step) / (10.0 + step))
  return jax.tree.map(lambda e, n: rate * e + (1.0 - rate) * n, ema, new)


def model_input(images):
  """The pipeline's uint8 pixels as the model's [-1, 1] floats, the same as pipeline.to_float gives
  on the host; float images (synthetic, or preprocessed already) pass unchanged."""
  return jnp.asarray(pipeline.PIXEL_VALUES)[images] if images.dtype == jnp.uint8 else images


def make_train_step(model, tx, config, schedule, teacher=None, cached=False):
  """BN statistics are computed over the global batch: under jit with the batch sharded over
  the mesh, the mean in BatchNorm is a cross-device reduction (sync-BN), so the loss does not
  depend on how many devices hold the batch. With a `teacher` (distill.Teacher), the loss is
  config.distill.weight of the distillation loss plus the rest of the label loss; the step's
  last argument is the teacher's variables, or with `cached` its logits for this batch
  (teacher_cache.py), and None without a teacher. With config.data.pixels_on_device, `pixels`
  is the training split's (canvases, sizes) on the devices (pipeline.stored_pixels)."""
  num_classes = config.model.num_classes
  smoothing = config.training.label_smoothing
  ema_decay = config.training.ema_decay
  weight, temperature = config.distill.weight, config.distill.temperature

  def train_step(state, images, labels, rng, teaching, pixels=None):
    dropout_rng = jax.random.fold_in(rng, state.step)
    teacher_view = None
    if pixels is not None:  # config.data.pixels_on_device: images are (indices, places) in them
      (indices, places), (canvases, sizes) = images, pixels
      images = (canvases[indices], sizes[indices], places)
    if config.data.augment_on_device:  # images: the host's (canvases, sizes, places)
      crops = lambda resolution: device_augment.train_crops(
        *images, config.seed, resolution, config.data.min_crop_area
      )
      if teacher and not cached and teacher.resolution != config.resolution:
        # The student's box and flip, resampled from the stored pixels at the teacher's own size.
        teacher_view = model_input(crops(teacher.resolution))
      images = crops(config.resolution)
    inputs = model_input(images)
    if not teacher or cached:
      targets = teaching
    else:
      targets = distill.teacher_logits(teacher, teaching, inputs, teacher_view)

    def loss_fn(params):
      logits, updates = model.apply(
        {"params": params, "batch_stats": state.batch_stats},
        inputs,
        train=True,
        mutable=["batch_stats"],
        rngs={"dropout": dropout_rng},
      )
      losses = {"label_loss": jnp.mean(cross_entropy(logits, labels, num_classes, smoothing))}
      loss = losses["label_loss"]
      if teacher:
        taught = distill.student_logits(teacher, logits)
        losses["distill_loss"] = jnp.mean(distill.distillation_loss(taught, targets, temperature))
        losses["teacher_agreement"] = jnp.mean(jnp.argmax(taught, -1) == jnp.argmax(targets, -1))
        loss = (1 - weight) * loss + weight * losses["distill_loss"]
      return loss, (logits, updates["batch_stats"], losses)

    (loss, (logits, batch_stats, losses)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params
    )
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    if ema_decay:
      ema_params = ema_update(state.ema_params, params, state.step, ema_decay)
      ema_batch_stats = ema_update(state.ema_batch_stats, batch_stats, state.step, ema_decay)
    else:
      ema_params, ema_batch_stats = None, None
    metrics = {
      "train/loss": loss,
      "train/top1": jnp.mean(jnp.argmax(logits, -1) == labels),
      "train/grad_norm": optax.tree.norm(grads),
      "train/learning_rate": schedule(state.step),
      **({f"train/{name}": value for name, value in losses.items()} if teacher else {}),
    }
    return TrainState(
      step=state.step + 1,
      params=params,
      batch_stats=batch_stats,
      opt_state=opt_state,
      ema_params=ema_params,
      ema_batch_stats=ema_batch_stats,
    ), metrics

  return train_step


def make_eval_step(model, config):
  """Sums over the batch (masked for padding) so partial batches add up exactly."""
  num_classes = config.model.num_classes

  def eval_step(params, batch_stats, images, labels, mask):
    if config.data.augment_on_device:  # images: the host's (canvases, sizes)
      images = device_augment.central_crops(
        *images, config.resolution, config.data.central_crop_fraction
      )
    logits = model.apply(
      {"params": params, "batch_stats": batch_stats}, model_input(images), train=False
    )
    top5 = jax.lax.top_k(logits, min(5, num_classes))[1]
    correct5 = jnp.any(top5 == labels[:, None], axis=-1)
    loss = cross_entropy(logits, labels, num_classes, 0.0)
    return {
      "top1": jnp.sum((top5[:, 0] == labels) * mask),
      "top5": jnp.sum(correct5 * mask),
      "loss": jnp.sum(loss * mask),
      "count": jnp.sum(mask),
    }

  return eval_step
