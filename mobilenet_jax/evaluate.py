"""Scoring: a model's top-1/top-5/loss over a split (raw and EMA weights), a workdir's latest
checkpoint or imported weights on the validation split, and one image's top-5."""

import jax
import jax.numpy as jnp
import numpy as np

from mobilenet_jax import checkpointing, data, importers, models, sharding, train_step
from mobilenet_jax import workdir as workdir_lib


def over_batches(eval_fn, batches, mesh, variables, label_offset=0):
  """Sums top-1/top-5/loss over every example once; returns fractions and the count.
  `label_offset` shifts dataset labels to the model's (1 for TF-slim's background class)."""
  batch_sharding = sharding.batch_sharding(mesh)
  totals = None
  for images, labels, mask in data.iterate(batches):
    put = lambda x: jax.make_array_from_process_local_data(batch_sharding, x)
    sums = eval_fn(*variables, put(images), put(labels + label_offset), put(mask))
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
  totals = jax.device_get(totals)
  count = int(totals["count"])
  return {"top1": float(totals["top1"]) / count, "top5": float(totals["top5"]) / count,
          "loss": float(totals["loss"]) / count, "count": count}


def make_eval_fn(model, config, mesh):
  return jax.jit(train_step.make_eval_step(model, config.model.num_classes),
                 out_shardings=sharding.replicated(mesh))


def state_weights(state, config):
  """{prefix: (params, batch_stats)} to evaluate: the raw weights, and the EMA when kept."""
  weights = {"": (state.params, state.batch_stats)}
  if config.training.ema_decay:
    weights["ema/"] = (state.ema_params, state.ema_batch_stats)
  return weights


def score(eval_fn, batches, mesh, weights, label_offset):
  """Every {prefix: (params, batch_stats)} evaluated; results keyed prefix + metric."""
  results = {}
  for prefix, variables in weights.items():
    for key, value in over_batches(eval_fn, batches, mesh, variables, label_offset).items():
      results[prefix + key] = value
  return results


def score_on_val(config, model, mesh, weights):
  batches, _ = data.eval_batches(data.load_split(config.data, "val"), config)
  return score(make_eval_fn(model, config, mesh), batches, mesh, weights,
               importers.label_offset(config))


def checkpoint(config, workdir):
  """Scores the latest checkpoint in `workdir` (raw and EMA weights) on this machine's devices,
  however many wrote it; returns {'step', 'top1', 'top5', 'loss', 'count', 'ema/top1', ...}."""
  workdir_lib.check_trained_config(config, workdir)
  mesh, model = sharding.make_mesh(config), models.build_model(config)
  state = checkpointing.restore_for_inference(config, model, mesh, workdir)
  return {"step": int(state.step),
          **score_on_val(config, model, mesh, state_weights(state, config))}


def inference_variables(config, model, workdir=None):
  """({'params', 'batch_stats'}, the weights' own class names or ()) from config.init_from's
  weights or, without it, the latest checkpoint in `workdir` (its raw weights)."""
  if config.init_from:
    imported = importers.load_for_model(config, model)
    return {"params": imported.params, "batch_stats": imported.batch_stats}, imported.labels
  workdir_lib.check_trained_config(config, workdir)
  state = checkpointing.restore_for_inference(config, model, sharding.make_mesh(config), workdir)
  return {"params": state.params, "batch_stats": state.batch_stats}, ()


def predict(config, image_path, workdir=None, top=5):
  """[(label, probability)] for one image, from config.init_from's weights or, without it,
  the latest checkpoint in `workdir`. Preprocessed as in evaluation (central crop, resize)."""
  model = models.build_model(config)
  image = data.load_image(image_path, config)  # before the restore: a bad file fails fast
  names = data.read_class_names(config.data.class_names) if config.data.class_names else ()
  variables, labels = inference_variables(config, model, workdir)
  names = names or labels
  logits = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, image[None])[0]
  probabilities = np.asarray(jax.nn.softmax(logits))
  offset = importers.label_offset(config)
  if not names:
    print("note: no class names (neither config.data.class_names nor the weights give them); "
          "labels are the dataset's class indices", flush=True)
  # Dataset class indices, as config.data.class_names counts them: a background slot is not one.
  label = lambda i: ("background" if i < offset else names[i - offset]
                     if i - offset < len(names) else f"class index {i - offset}")
  return [(label(int(i)), float(probabilities[i])) for i in np.argsort(-probabilities)[:top]]


def imported_weights(config):
  """Scores config.init_from's weights; returns {'top1', 'top5', 'loss', 'count'}."""
  mesh, model = sharding.make_mesh(config), models.build_model(config)
  imported = importers.load_for_model(config, model)
  return score_on_val(config, model, mesh, {"": (imported.params, imported.batch_stats)})
