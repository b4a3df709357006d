"""Named training recipes, each a set of config values; runs record which one they used.

paper_v1 / paper_v2 follow the papers' text (../shared/reference/papers.md, rmsprop.md) and
set nothing the papers do not imply; modern adds the later recipe knobs (cosine, warmup, label
smoothing, EMA) that beat the paper numbers, and is tagged so the two are never mixed.
"""

from mobilenet_jax import config as config_lib

_TF1_RMSPROP = {"optimizer.name": "tf1_rmsprop", "optimizer.rms_decay": 0.9,
                "optimizer.momentum": 0.9, "optimizer.epsilon": 1.0,
                "optimizer.weight_decay": 4e-5}

PRESETS = {
    # V1: "RMSprop ... similar to Inception V3": lr 0.045 per batch of 32, x0.94 every 2 epochs;
    # no label smoothing; little or no L2 on depthwise filters (excluded by default).
    "paper_v1": {**_TF1_RMSPROP, "optimizer.learning_rate": 0.045,
                 "optimizer.reference_batch_size": 32, "schedule.name": "exponential",
                 "schedule.decay_rate": 0.94, "schedule.decay_epochs": 2.0,
                 "schedule.warmup_epochs": 0.0, "training.label_smoothing": 0.0,
                 "training.ema_decay": 0.0},
    # V2 Section 6.1: RMSprop decay and momentum 0.9, wd 4e-5, lr 0.045 x0.98 per epoch, batch 96.
    "paper_v2": {**_TF1_RMSPROP, "optimizer.learning_rate": 0.045,
                 "optimizer.reference_batch_size": 96, "schedule.name": "exponential",
                 "schedule.decay_rate": 0.98, "schedule.decay_epochs": 1.0,
                 "schedule.warmup_epochs": 0.0, "training.label_smoothing": 0.0,
                 "training.ema_decay": 0.0},
    "modern": {**_TF1_RMSPROP, "optimizer.learning_rate": 0.045,
               "optimizer.reference_batch_size": 96, "schedule.name": "cosine",
               "schedule.warmup_epochs": 5.0, "training.label_smoothing": 0.1,
               "training.ema_decay": 0.9999},
}


def apply_preset(config, name):
  if name not in PRESETS:
    raise config_lib.ConfigError(f"preset {name!r}; allowed presets: {sorted(PRESETS)}")
  for dotted, value in PRESETS[name].items():
    group, key = dotted.split(".")
    config[group][key] = value
  config.training.preset = name
  return config
