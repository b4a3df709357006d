"""Official weights, imported: they must give the original models' accuracy on real images."""

import json

import h5py
import jax
import numpy as np
import pytest

from mobilenet_jax import evaluate
from mobilenet_jax.config import schema as config_lib
from mobilenet_jax.core import errors
from mobilenet_jax.models import importers, mobilenet
from tests.helpers import (
  SAMPLE,
  V1_TFJS,
  V2_NPY,
  WNIDS,
  load_config,
  needs_artifacts,
  v1_config,
  without_tensorflow,
)

# Whole training runs, exports, imported weights or several processes: not the fast tier.
pytestmark = pytest.mark.slow


def write_keras_h5(path, tensors):
  """Keras 2's save_weights layout: layer groups, 'weight_names' attributes, 'name:0' datasets."""
  layers = {}
  for name in tensors:
    layers.setdefault(name.split("/")[0], []).append(name)
  with h5py.File(path, "w") as f:
    f.attrs["layer_names"] = [layer.encode() for layer in layers]
    for layer, names in layers.items():
      group = f.create_group(layer)
      group.attrs["weight_names"] = [f"{name}:0".encode() for name in names]
      for name in names:
        group.create_dataset(f"{name}:0", data=tensors[name])


@needs_artifacts("mobilenet_v1_0.75_224_keras_tfjs")
def test_keras_v1_from_tfjs_and_h5_scores_imagenet_images(imagenet_folder, tmp_path):
  config = v1_config(f"keras_tfjs:{V1_TFJS}", dataset=f"folder:{imagenet_folder}")
  results = evaluate.imported_weights(config)
  # Exactly what these weights scored before the input pipeline was rewritten (issue 22).
  assert results["count"] == 250 and round(results["top1"] * 250) == 218, results

  h5_path = tmp_path / "mobilenet_7_5_224_tf.h5"
  write_keras_h5(h5_path, importers.read_keras_tfjs(str(V1_TFJS)))
  model = mobilenet.build_model(config)
  from_tfjs = importers.load_for_model(config, model)
  config.init_from = f"keras_h5:{h5_path}"
  from_h5 = importers.load_for_model(config, model)
  both = [{"params": w.params, "batch_stats": w.batch_stats} for w in (from_tfjs, from_h5)]
  assert jax.tree.structure(both[0]) == jax.tree.structure(both[1])
  for from_tfjs_leaf, from_h5_leaf in zip(*map(jax.tree.leaves, both)):
    np.testing.assert_array_equal(from_tfjs_leaf, from_h5_leaf)
  assert from_h5.report["unexpected"] == [] and from_h5.label_offset == 0


@needs_artifacts("mobilenet_v2_1.0_224_tfslim_float_npy")
def test_slim_v2_npy_scores_imagenet_images_with_the_background_class(imagenet_folder):
  config = load_config("mobilenet_v2")
  config.init_from = f"slim_npy:{V2_NPY}"
  config.model.num_classes = 1001
  config.data.dataset = f"folder:{imagenet_folder}"
  config.data.class_names = str(WNIDS)  # 1000 wnids; the importer's offset adds the background
  config.data.eval_batch_size = 50
  assert importers.label_offset(config) == 1
  results = evaluate.imported_weights(config)
  assert results["count"] == 250 and round(results["top1"] * 250) == 219, results


@needs_artifacts("mobilenet_v1_0.75_224_keras_tfjs")
def test_wrong_width_or_class_count_is_refused_with_both_shapes():
  config = v1_config(f"keras_tfjs:{V1_TFJS}")
  config.model.width_multiplier = 0.5
  with pytest.raises(
    errors.WeightsError,
    match=r"block_00/conv_bn/conv/kernel: model expects \(3, 3, 3, 16\), "
    r"conv1/kernel is \(3, 3, 3, 24\)",
  ):
    evaluate.imported_weights(config)
  config = v1_config(f"keras_tfjs:{V1_TFJS}")
  config.model.num_classes = 1001
  with pytest.raises(
    errors.WeightsError,
    match=r"classifier/kernel: model expects "
    r"\(768, 1001\), conv_preds/kernel is \(768, 1000\)",
  ):
    evaluate.imported_weights(config)
  config.init_new_classifier = True  # fine-tuning to another class count keeps the body
  imported = importers.load_for_model(config, mobilenet.build_model(config))
  assert imported.params["classifier"]["kernel"].shape == (768, 1001)


@needs_artifacts("mobilenet_v1_0.75_224_keras_tfjs")
def test_predict_names_the_imagenet_class():
  config = v1_config(f"keras_tfjs:{V1_TFJS}")
  config.data.class_names = ""  # labels from the weights' own metadata.json
  top5 = evaluate.predict(config, str(SAMPLE / "n01440764_tench.JPEG"))
  assert len(top5) == 5 and top5[0][0].startswith("tench")


def test_unknown_init_kind_is_a_config_error():
  config = v1_config("onnx:/weights.onnx")
  with pytest.raises(
    errors.ConfigError,
    match=r"KIND one of \['keras_h5', 'keras_tfjs', "
    r"'slim_ckpt', 'slim_npy', 'workdir', 'timm'\]",
  ):
    config_lib.validate(config)


@without_tensorflow
def test_slim_checkpoint_without_tensorflow_says_how_to_read_it(tmp_path):
  with pytest.raises(errors.WeightsError, match=r"needs TensorFlow .*pip install tensorflow-cpu"):
    importers.read_slim_ckpt(str(tmp_path / "model.ckpt"))


def test_unreadable_weight_files_are_named_in_one_line(tmp_path):
  config = load_config("mobilenet_v1")

  def refused(spec, pattern):
    config.init_from = spec
    with pytest.raises(errors.WeightsError, match=pattern):
      importers.load(config, None)

  refused(f"keras_h5:{tmp_path}", rf"cannot read keras_h5 weights from {tmp_path} \(")
  refused(f"keras_tfjs:{tmp_path}", r"cannot read keras_tfjs weights .*model.json")
  (tmp_path / "model.json").write_text(
    json.dumps(
      {
        "weightsManifest": [
          {"paths": ["shard"], "weights": [{"name": "w", "shape": [2, 2], "dtype": "float32"}]}
        ]
      }
    )
  )
  (tmp_path / "shard").write_bytes(b"\0" * 12)  # a cut shard: 12 of 16 bytes
  refused(f"keras_tfjs:{tmp_path}", r"\['shard'\] has 12 bytes, the manifest describes 16")
  npy = tmp_path / "npy"
  npy.mkdir()
  np.save(npy / "Conv_weights.npy", np.zeros((3, 3, 3, 32), np.float32))
  whole = (npy / "Conv_weights.npy").read_bytes()
  for cut in (40, len(whole) - 100):  # inside the header, inside the data
    (npy / "Conv_weights.npy").write_bytes(whole[:cut])
    refused(f"slim_npy:{npy}", rf"{npy / 'Conv_weights.npy'} is not a whole .npy file")


@needs_artifacts("mobilenet_v2_1.0_224_tfslim_float_npy")
def test_predict_without_class_names_gives_dataset_class_indices(caplog):
  config = load_config("mobilenet_v2")
  config.init_from = f"slim_npy:{V2_NPY}"
  config.model.num_classes = 1001
  top5 = evaluate.predict(config, str(SAMPLE / "n01440764_tench.JPEG"))
  assert top5[0][0] == "class index 0"  # tench, not TF-slim's raw index 1
  assert "note: no class names" in caplog.text
