"""The weights a run or an importer names, scored on the validation split or asked about one
image: what --mode=eval and --mode=predict print, and what --mode=export writes."""

import logging
import os
from typing import Any

import jax
import ml_collections
import numpy as np

from mobilenet_jax.config import workdir as workdir_lib
from mobilenet_jax.core import errors
from mobilenet_jax.data import pipeline, sources
from mobilenet_jax.models import importers, mobilenet
from mobilenet_jax.train import checkpointing, scoring, sharding

log = logging.getLogger(__name__)


def checkpoint(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Scores the latest checkpoint in `workdir` (raw and EMA weights) on this machine's devices,
  however many wrote it; returns {'step', 'top1', 'top5', 'loss', 'count', 'ema/top1', ...}."""
  workdir_lib.check_trained_config(config, workdir)
  mesh, model = sharding.make_mesh(config), mobilenet.build_model(config)
  state = checkpointing.restore_for_inference(config, model, mesh, workdir)
  return {
    "step": int(state.step),
    **scoring.score_on_val(config, model, mesh, scoring.state_weights(state, config)),
  }


def has_checkpoints(workdir: str | None) -> bool:
  return workdir is not None and os.path.isdir(os.path.join(workdir, "checkpoints"))


def inference_variables(
  config: ml_collections.ConfigDict, model: Any, workdir: str | None = None
) -> tuple[dict, tuple]:
  """({'params', 'batch_stats'}, the weights' own class names or ()) from the latest checkpoint
  in `workdir` (its raw weights) or, where it has none, config.init_from's weights: a run that
  started from imported weights is exported as it trained them."""
  if config.init_from and not has_checkpoints(workdir):
    imported = importers.load_for_model(config, model)
    return {"params": imported.params, "batch_stats": imported.batch_stats}, imported.labels
  if workdir is None:
    raise errors.UserError("no weights: give --config.init_from=KIND:PATH or --workdir=DIR")
  workdir_lib.check_trained_config(config, workdir)
  state = checkpointing.restore_for_inference(config, model, sharding.make_mesh(config), workdir)
  return {"params": state.params, "batch_stats": state.batch_stats}, ()


def predict(
  config: ml_collections.ConfigDict, image_path: str, workdir: str | None = None, top: int = 5
) -> list[tuple[str, float]]:
  """[(label, probability)] for one image, from config.init_from's weights or, without it,
  the latest checkpoint in `workdir`. Preprocessed as in evaluation (central crop, resize)."""
  model = mobilenet.build_model(config)
  image = pipeline.load_image(image_path, config)  # before the restore: a bad file fails fast
  names = sources.read_class_names(config.data.class_names) if config.data.class_names else ()
  variables, labels = inference_variables(config, model, workdir)
  names = names or labels
  logits = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, image[None])[0]
  probabilities = np.asarray(jax.nn.softmax(logits))
  offset = importers.label_offset(config)
  if not names:
    log.info(
      "note: no class names (neither config.data.class_names nor the weights give "
      "them); labels are the dataset's class indices"
    )
  # Dataset class indices, as config.data.class_names counts them: a background slot is not one.
  label = lambda i: (
    "background"
    if i < offset
    else names[i - offset]
    if i - offset < len(names)
    else f"class index {i - offset}"
  )
  return [(label(int(i)), float(probabilities[i])) for i in np.argsort(-probabilities)[:top]]


def imported_weights(config: ml_collections.ConfigDict) -> dict:
  """Scores config.init_from's weights; returns {'top1', 'top5', 'loss', 'count'}."""
  mesh, model = sharding.make_mesh(config), mobilenet.build_model(config)
  imported = importers.load_for_model(config, model)
  return scoring.score_on_val(config, model, mesh, {"": (imported.params, imported.batch_stats)})
