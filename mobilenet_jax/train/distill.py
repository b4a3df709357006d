"""A teacher for any run (config.distill): its model and weights, which of its outputs teach which
of the student's, and the loss that matches the student's outputs to the teacher's.

The teacher sees the student's own augmented crop (Beyer et al. 2022, "a good teacher is patient
and consistent"): with config.data.augment_on_device, the same box and flip taken from the stored
pixels at the teacher's own resolution; otherwise the student's crop resampled to it. It runs in
inference mode (running BN statistics, no dropout) inside the jitted step; its weights are read
from their source at every start, so they are never part of the student's checkpoint.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from mobilenet_jax.core import errors
from mobilenet_jax.data import sources
from mobilenet_jax.models import importers, mobilenet


@dataclasses.dataclass
class Teacher:
  model: Any
  variables: dict  # {'params', 'batch_stats'}
  resolution: int
  # Output indices: the student's logits[student_outputs] learn from the teacher's
  # logits[teacher_outputs]; None where every output teaches the output at its own index.
  student_outputs: np.ndarray | None
  teacher_outputs: np.ndarray | None


def output_mapping(config, teacher_config, class_names):
  """(student output indices, teacher output indices): the student dataset's `class_names`
  found by name in config.distill.teacher_classes, each side past its background slot."""
  if not config.distill.teacher_classes:
    if teacher_config.model.num_classes != config.model.num_classes:
      raise errors.ConfigError(
        f"config.distill.teacher has {teacher_config.model.num_classes} outputs and the "
        f"student {config.model.num_classes}: give config.distill.teacher_classes (the "
        "teacher's class names, one per line, in its output order) to match them by name"
      )
    return None, None
  names = sources.read_class_names(config.distill.teacher_classes)
  missing = [name for name in class_names if name not in names]
  if missing:
    raise errors.ConfigError(
      f"config.distill.teacher_classes={config.distill.teacher_classes!r} lacks "
      f"{len(missing)} of the student's {len(class_names)} classes: {', '.join(missing[:10])}"
      + (", ..." if len(missing) > 10 else "")
    )
  student = importers.label_offset(config) + np.arange(len(class_names))
  teacher = importers.label_offset(teacher_config) + np.array(
    [names.index(name) for name in class_names]
  )
  return student, teacher


def teacher_num_classes(config, teacher_config):
  """The teacher's outputs by config.distill.teacher_classes: its lines, plus the background
  slot of TF-slim's ImageNet classifiers (1000 names, 1001 outputs)."""
  kind, _ = importers.parse_init_from(teacher_config.init_from)
  names = sources.read_class_names(config.distill.teacher_classes)
  return len(names) + int(kind.startswith("slim") and len(names) == 1000)


def load_teacher(
  config: ml_collections.ConfigDict, teacher_config: ml_collections.ConfigDict, class_names: tuple
) -> Teacher:
  """config.distill's teacher, described by `teacher_config` (its model, resolution and
  init_from = config.distill.teacher); a teacher that does not load is one line naming
  config.distill.teacher."""
  student, teacher = output_mapping(config, teacher_config, class_names)
  model = mobilenet.build_model(teacher_config)
  try:
    imported = importers.load_for_model(teacher_config, model)
  except errors.WeightsError as error:
    # The importer names the key it reads, init_from; here the weights are the teacher's.
    message = str(error).replace("config.init_from=", "config.distill.teacher=")
    if not config.distill.teacher_config:
      message = message.replace(
        "does not fit config.model",
        "does not fit the student's model (config.distill.teacher_config='' reads the teacher "
        "as the student's; name the teacher's config file there)",
      )
    raise errors.WeightsError(message) from None
  variables = {"params": imported.params, "batch_stats": imported.batch_stats}
  return Teacher(model, variables, teacher_config.resolution, student, teacher)


def distillation_loss(student_logits, teacher_logits, temperature):
  """Hinton et al. 2015: KL(teacher || student) of the softened distributions, times T^2 so
  its gradients keep their scale as the temperature changes."""
  log_student = jax.nn.log_softmax(student_logits.astype(jnp.float32) / temperature)
  log_teacher = jax.nn.log_softmax(teacher_logits.astype(jnp.float32) / temperature)
  return temperature**2 * optax.losses.kl_divergence_with_log_targets(log_student, log_teacher)


def teacher_logits(teacher, variables, images, view=None):
  """The teacher's logits for the student's model inputs `images` (resampled to the teacher's
  resolution), or for `view`, the same crops taken from the original pixels at its resolution
  (config.data.augment_on_device), over the outputs that teach."""
  batch, height, width, channels = images.shape
  if view is not None:
    images = view
  elif (height, width) != (teacher.resolution, teacher.resolution):
    images = jax.image.resize(
      images, (batch, teacher.resolution, teacher.resolution, channels), "bilinear"
    )
  logits = teacher.model.apply(variables, images, train=False).astype(jnp.float32)
  logits = logits if teacher.teacher_outputs is None else logits[:, teacher.teacher_outputs]
  return jax.lax.stop_gradient(logits)


def student_logits(teacher, logits):
  return logits if teacher.student_outputs is None else logits[:, teacher.student_outputs]
