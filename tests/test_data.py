"""The input pipeline: TFDS ArrayRecord sources prepared by our command, folders, determinism."""

import subprocess
import sys

import grain
import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image
from tensorflow_datasets.core.download import downloader

from mobilenet_jax import prepare_data, trainer
from mobilenet_jax.config import schema as config_lib
from mobilenet_jax.core import errors
from mobilenet_jax.data import device_augment, pipeline, sources
from mobilenet_jax.train import train_step
from tests.helpers import (
  ARTIFACTS,
  REPO,
  needs_artifacts,
  tiny_config,
  with_tensorflow,
  without_tensorflow,
)


class TinyStripes(tfds.core.GeneratorBasedBuilder):
  """A two-class TFDS dataset generated locally, so preparation needs no network.

  Images are stored as uint8 tensors: TFDS's Image feature would need TensorFlow to encode.
  """

  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(
      builder=self,
      features=tfds.features.FeaturesDict(
        {
          "image": tfds.features.Tensor(shape=(12, 12, 3), dtype=np.uint8),
          "label": tfds.features.ClassLabel(names=["horizontal", "vertical"]),
        }
      ),
    )

  def _split_generators(self, dl_manager):
    return {"train": self._generate_examples(0, 256), "test": self._generate_examples(1, 50)}

  def _generate_examples(self, seed, count):
    rng = np.random.default_rng(seed)
    for i in range(count):
      label = i % 2
      stripes = np.tile((np.arange(12) % 4 < 2)[:, None], (1, 12))
      image = (stripes.T if label else stripes)[..., None] * 200 + rng.integers(0, 50, (12, 12, 3))
      yield i, {"image": image.astype(np.uint8), "label": label}


class TinyPhotos(TinyStripes):
  """The same data with TFDS's Image feature, whose encoding needs TensorFlow."""

  def _info(self):
    return tfds.core.DatasetInfo(
      builder=self,
      features=tfds.features.FeaturesDict(
        {
          "image": tfds.features.Image(shape=(12, 12, 3)),
          "label": tfds.features.ClassLabel(names=["horizontal", "vertical"]),
        }
      ),
    )


def test_unprepared_tfds_dataset_prints_the_command_that_prepares_it(tmp_path):
  with pytest.raises(errors.DataError) as error:
    sources.load_split(
      tiny_config(**{"data.dataset": "tfds:tiny_stripes", "data.data_dir": str(tmp_path)}).data,
      "train",
    )
  assert (
    f"python -m mobilenet_jax.prepare_data --dataset=tfds:tiny_stripes --data_dir={tmp_path}"
  ) in str(error.value)


def test_imagenet_preparation_says_where_the_tar_files_go(tmp_path):
  with pytest.raises(errors.DataError) as error:
    prepare_data.prepare("imagenet2012", str(tmp_path))
  message = str(error.value)
  assert "ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar" in message
  assert str(tmp_path / "downloads" / "manual") in message


class TinyDownload(TinyStripes):
  """A dataset whose source is a URL that never resolves (the .invalid domain is reserved)."""

  def _split_generators(self, dl_manager):
    dl_manager.download("https://example.invalid/tiny_download.tgz")


def test_a_failed_download_is_one_line_naming_the_dataset(tmp_path, monkeypatch):
  # TFDS finds a registered dataset's code through importlib_resources (in requirements.txt).
  builder = tfds.builder("imagenette", data_dir=str(tmp_path))
  assert builder.code_path.name == "imagenette_dataset_builder.py"
  monkeypatch.setattr(downloader, "MAX_RETRIES", 0)  # TFDS's backoff takes minutes
  with pytest.raises(
    errors.DataError,
    match=r"^--dataset=tfds:tiny_download: the download "
    r"failed \(ConnectionError: .*example\.invalid.*\); "
    r"it needs network access",
  ) as error:
    prepare_data.prepare("tiny_download", str(tmp_path))
  assert "\n" not in str(error.value)


@pytest.mark.slow
def test_prepared_tfds_dataset_trains_through_data_source(tmp_path):
  builder = prepare_data.prepare("tiny_stripes", str(tmp_path))
  assert sorted(p.name for p in builder.data_path.glob("*.array_record*")) == [
    "tiny_stripes-test.array_record-00000-of-00001",
    "tiny_stripes-train.array_record-00000-of-00001",
  ]
  config = tiny_config(
    **{
      "data.dataset": "tfds:tiny_stripes",
      "data.data_dir": str(tmp_path),
      "training.num_steps": 40,
      "training.log_every_steps": 10,
      "model.dropout_rate": 0.2,
    }
  )
  summary = trainer.train_and_evaluate(config, str(tmp_path / "run"))
  assert summary["eval_count"] == 50  # the 'test' split stands in for a missing 'validation'
  assert summary["top1"] > 0.8  # stripes: chance is 0.5


class TinyJpegs(TinyStripes):
  """JPEGs of several sizes in TFDS's Image feature, whose encoding needs TensorFlow."""

  def _info(self):
    return tfds.core.DatasetInfo(
      builder=self,
      features=tfds.features.FeaturesDict(
        {
          "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
          "label": tfds.features.ClassLabel(names=["dark", "light"]),
        }
      ),
    )

  def _generate_examples(self, seed, count):
    rng = np.random.default_rng(seed)
    for i in range(count):
      height, width = rng.integers(40, 90, 2)
      ramp = np.linspace(0, 255, width)[None, :, None] * rng.uniform(0.3, 1, (1, 1, 3))
      yield (
        i,
        {
          "image": (ramp + rng.integers(0, 30, (height, width, 3))).astype(np.uint8),
          "label": i % 2,
        },
      )


@pytest.mark.slow
@with_tensorflow
def test_tfds_image_files_are_decoded_by_the_pipeline_as_tfds_decodes_them(tmp_path):
  prepare_data.prepare("tiny_jpegs", str(tmp_path))
  config = tiny_config(
    **{"data.dataset": "tfds:tiny_jpegs", "data.data_dir": str(tmp_path), "resolution": 32}
  )
  split = sources.load_split(config.data, "val")
  assert isinstance(split.source[0][0], bytes)  # the JPEG as stored, decoded knowing the crop
  whole = tfds.data_source("tiny_jpegs", split="test", data_dir=str(tmp_path))
  for i in range(len(split)):
    np.testing.assert_array_equal(
      pipeline.central_crop(split.source[i][0], 32, 0.875),
      pipeline.central_crop(np.asarray(whole[i]["image"]), 32, 0.875),
    )
  assert pipeline.train_batches(sources.load_split(config.data, "train"), config)[0][0].shape == (
    64,
    32,
    32,
    3,
  )


@without_tensorflow
def test_tfds_image_datasets_without_tensorflow_ask_for_it(tmp_path):
  with pytest.raises(errors.DataError, match="pip install tensorflow-cpu"):
    prepare_data.prepare("tiny_photos", str(tmp_path))


def write_folder(root, class_names, per_class, size=10):
  for split in ("train", "val"):
    for index, name in enumerate(class_names):
      folder = root / split / name
      folder.mkdir(parents=True)
      for i in range(per_class):
        Image.fromarray(np.full((size, size + 4, 3), 40 * index + i, np.uint8)).save(
          folder / f"{i}.jpg"
        )


def test_folder_labels_follow_the_class_names_file(tmp_path):
  write_folder(tmp_path, ["n02", "n07"], per_class=3)
  names = tmp_path / "wnids.txt"
  names.write_text("n01\nn02\nn05\nn07\n")
  config = tiny_config(**{"data.dataset": f"folder:{tmp_path}", "data.class_names": str(names)})
  split = sources.load_split(config.data, "val")
  assert split.num_classes == 4 and len(split) == 6
  assert sorted({split.source[i][1] for i in range(len(split))}) == [1, 3]
  names.write_text("n02\n")
  with pytest.raises(errors.DataError, match=r"class folders \['n07'\]"):
    sources.load_split(config.data, "val")


def test_train_batches_are_a_pure_function_of_seed_and_step():
  config = tiny_config()
  split = sources.load_split(config.data, "train")
  first, again = pipeline.train_batches(split, config), pipeline.train_batches(split, config)
  for step in (0, 7, 40):  # 40 is past the first epoch of 22 batches
    np.testing.assert_array_equal(first[step][0], again[step][0])
    np.testing.assert_array_equal(first[step][1], again[step][1])
  assert not np.array_equal(first[0][1], first[22][1])  # a new epoch is shuffled anew
  images = first[3][0]
  assert images.shape == (64, 16, 16, 3) and images.dtype == np.uint8


def test_eval_batches_cover_every_example_once():
  config = tiny_config(**{"data.eval_batch_size": 64})
  split = sources.load_split(config.data, "val")
  batches, count = pipeline.eval_batches(split, config)
  masks = [batches[b][2] for b in range(len(batches))]
  assert count == 360 and len(batches) == 6 and sum(m.sum() for m in masks) == 360
  assert masks[-1][: 360 - 5 * 64].all() and not masks[-1][360 - 5 * 64 :].any()


@pytest.mark.slow
def test_digits_are_scikit_learns_digits_split_80_20():
  from sklearn.datasets import load_digits

  digits = load_digits()
  config = tiny_config().data
  train, val = sources.load_split(config, "train"), sources.load_split(config, "val")
  assert (len(train), len(val)) == (1437, 360)
  images = np.concatenate([train.source.images, val.source.images])
  labels = np.concatenate([train.source.labels, val.source.labels])
  order = np.random.default_rng(0).permutation(1797)
  expected = np.repeat((digits.images * (255 / 16)).astype(np.uint8)[..., None], 3, axis=-1)
  np.testing.assert_array_equal(images, expected[order])
  np.testing.assert_array_equal(labels, digits.target[order])


@pytest.mark.slow
def test_glyphs_are_rendered_letters_a_pure_function_of_the_split():
  import ml_collections

  config = ml_collections.ConfigDict({"dataset": "glyphs"})
  train, val = sources.load_split(config, "train"), sources.load_split(config, "val")
  assert (len(train), len(val)) == (10_000, 2_000)
  assert train.num_classes == 26 and train.class_names[:3] == ("A", "B", "C")
  image, label = val.source[0]
  assert image.shape == (32, 32, 3) and image.dtype == np.uint8 and 0 <= label < 26
  assert (image[..., 0] == image[..., 2]).all()  # gray, as RGB
  assert image.max() == 255 and (image == 0).mean() > 0.5  # a white letter on black
  assert set(np.unique(val.source.labels)) == set(range(26))
  fresh = sources.render_glyphs.__wrapped__(*sources.GLYPH_SPLITS["val"])
  assert np.array_equal(fresh[0], val.source.images[..., 0])
  assert not np.array_equal(train.source.images[:100], val.source.images[:100])


def test_folder_labels_come_from_one_class_list_for_both_splits(tmp_path):
  write_folder(tmp_path, ["n01", "n02", "n03"], per_class=2)
  config = tiny_config(**{"data.dataset": f"folder:{tmp_path}"})
  for image in (tmp_path / "val" / "n02").iterdir():  # val lacks a class: labels keep their index
    image.unlink()
  (tmp_path / "val" / "n02").rmdir()
  val = sources.load_split(config.data, "val")
  assert val.num_classes == 3 and sorted(set(val.source.labels)) == [0, 2]
  (tmp_path / "val" / "n09").mkdir()  # val has a class the training split lacks
  with pytest.raises(errors.DataError, match=r"class folders \['n09'\] .* training split"):
    sources.load_split(config.data, "val")
  names = tmp_path / "wnids.txt"
  names.write_text("n01\nn02\nn02\nn03\n")
  config.data.class_names = str(names)
  with pytest.raises(errors.DataError, match=r"lists \['n02'\] more than once"):
    sources.load_split(config.data, "train")


@pytest.mark.slow
def test_an_unreadable_image_is_named_in_training_and_found_by_the_check(tmp_path):
  write_folder(tmp_path / "images", ["n01", "n02"], per_class=40)
  bad = tmp_path / "images" / "train" / "n02" / "cut.jpg"
  bad.write_bytes(b"")
  assert [path for path, _ in prepare_data.check_folder(str(tmp_path / "images"))] == [str(bad)]
  config = tiny_config(
    **{
      "data.dataset": f"folder:{tmp_path / 'images'}",
      "data.batch_size": 80,
      "training.num_steps": 3,
    }
  )
  with pytest.raises(errors.DataError, match=rf"{bad} is not a readable image .* --check"):
    trainer.train_and_evaluate(config, str(tmp_path / "run"))


def test_crop_box_keeps_the_inception_area_and_aspect_ranges():
  rng = np.random.default_rng(0)
  boxes = np.array([pipeline.crop_box(395, 467, rng, 0.25) for _ in range(20_000)])
  width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
  area, aspect = width * height / (395 * 467), width / height
  # Rounding to whole pixels moves the bounds by under half a pixel per side.
  assert 0.249 < area.min() < 0.252 and 0.99 < area.max() <= 1.0
  assert 0.745 < aspect.min() < 0.755 and 1.33 < aspect.max() < 1.34
  assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 467).all() and (boxes[:, 3] <= 395).all()
  # Drawn uniform in area and in log aspect; crops that do not fit are redrawn, which thins
  # the largest areas but leaves every part of the range well covered.
  assert (np.histogram(area, bins=3, range=(0.25, 1))[0] > 0.1 * len(area)).all()
  log_aspect = np.histogram(np.log(aspect), bins=3, range=(np.log(3 / 4), np.log(4 / 3)))[0]
  assert (log_aspect > 0.1 * len(aspect)).all()
  assert pipeline.crop_box(10, 10, rng, 1.0) == (0, 0, 10, 10)  # only the whole image fits


def _todays_eval_preprocess(path, resolution, fraction):
  """Evaluation preprocessing before the pipeline decoded lazily (commit 6dcaf85): the whole
  decode to a numpy array, a numpy crop, then PIL's bilinear resize."""
  with Image.open(path) as image:
    pixels = np.asarray(image.convert("RGB"))
  h, w = pixels.shape[:2]
  crop_h, crop_w = max(int(round(h * fraction)), 1), max(int(round(w * fraction)), 1)
  top, left = (h - crop_h) // 2, (w - crop_w) // 2
  crop = np.ascontiguousarray(pixels[top : top + crop_h, left : left + crop_w])
  resized = np.asarray(Image.fromarray(crop).resize((resolution, resolution), Image.BILINEAR))
  return resized.astype(np.float32) / 127.5 - 1.0


@pytest.mark.slow
@needs_artifacts("datasets", "imagenet_sample_250")
def test_eval_preprocessing_is_bit_identical_to_the_numpy_crop_on_the_sample_images(
  imagenet_folder,
):
  files = sorted((ARTIFACTS / "datasets" / "imagenet_sample_250").glob("*.JPEG"))
  assert len(files) == 250
  for resolution in (224, 128):
    config = tiny_config(**{"resolution": resolution})
    for path in files:
      np.testing.assert_array_equal(
        pipeline.eval_preprocess(str(path), config),
        _todays_eval_preprocess(path, resolution, 0.875),
      )
  # The eval batches carry the same pixels as uint8, and the eval step converts them on the
  # device to the same floats.
  config = tiny_config(
    **{"resolution": 128, "data.dataset": f"folder:{imagenet_folder}", "data.eval_batch_size": 125}
  )
  split = sources.load_split(config.data, "val")
  batches, count = pipeline.eval_batches(split, config)
  images = np.concatenate([batches[b][0] for b in range(len(batches))])
  files = split.source.files
  assert count == len(images) == 250 and images.dtype == np.uint8
  for image, path in zip(images, files):
    np.testing.assert_array_equal(
      pipeline.to_float(image), _todays_eval_preprocess(path, 128, 0.875)
    )


def test_the_steps_turn_uint8_pixels_into_the_hosts_floats_bit_for_bit():
  pixels = np.arange(256, dtype=np.uint8).reshape(16, 16)
  np.testing.assert_array_equal(
    jax.jit(train_step.model_input)(pixels), pixels.astype(np.float32) / 127.5 - 1.0
  )
  np.testing.assert_array_equal(pipeline.to_float(pixels), pixels.astype(np.float32) / 127.5 - 1.0)


@needs_artifacts("datasets", "imagenet_sample_250")
def test_training_crop_from_a_dct_scaled_decode_matches_the_crop_of_the_whole_image():
  path = str(ARTIFACTS / "datasets" / "imagenet_sample_250" / "n01440764_tench.JPEG")
  full = np.asarray(Image.open(path).convert("RGB"))  # 375 x 500
  for resolution, seed in ((224, 0), (64, 0), (32, 3)):
    crop = pipeline.random_resized_crop(path, np.random.default_rng(seed), resolution, 0.25)
    reference = pipeline.random_resized_crop(
      np.ascontiguousarray(full), np.random.default_rng(seed), resolution, 0.25
    )
    assert crop.shape == (resolution, resolution, 3)
    # From the whole decode the two are the same crop; a DCT-scaled decode blurs it a little.
    difference = np.abs(crop.astype(int) - reference.astype(int)).mean()
    assert difference < 6, (resolution, difference)


def test_a_resized_copy_keeps_labels_resumes_and_refuses_other_settings(tmp_path):
  write_folder(tmp_path / "images", ["n01", "n02"], per_class=3, size=40)
  Image.fromarray(np.zeros((30, 50, 3), np.uint8)).save(tmp_path / "images/train/n02/wide.png")
  (tmp_path / "images/train/n01/cut.jpg").write_bytes(b"")
  source = tiny_config(**{"data.dataset": f"folder:{tmp_path / 'images'}"}).data
  out = tmp_path / "copy"
  problems = prepare_data.write_resized_copy(source, str(out), max_side=20)
  assert [image for image, _ in problems] == [str(tmp_path / "images/train/n01/cut.jpg")]
  assert (out / "class_names.txt").read_text() == "n01\nn02\n"
  with Image.open(out / "train/n02/wide.png.jpg") as wide:
    assert wide.size == (20, 12) and wide.format == "JPEG"
  copy = tiny_config(
    **{"data.dataset": f"folder:{out}", "data.class_names": str(out / "class_names.txt")}
  ).data
  for split in ("train", "val"):
    original, resized = sources.load_split(source, split), sources.load_split(copy, split)
    assert sorted(resized.source.labels) == sorted(
      label
      for path, label in zip(original.source.files, original.source.labels)
      if not path.endswith("cut.jpg")
    )
  assert max(Image.open(f).size[0] for f in resized.source.files) == 20

  # Run again: what exists is kept, what is missing is written.
  kept = out / "train/n01/0.jpg"
  written_at = kept.stat().st_mtime_ns
  (out / "val/n02/1.jpg").unlink()
  prepare_data.write_resized_copy(source, str(out), max_side=20)
  assert kept.stat().st_mtime_ns == written_at and (out / "val/n02/1.jpg").exists()
  with pytest.raises(errors.DataError, match=r"holds a copy made with .*'max_side': 20"):
    prepare_data.write_resized_copy(source, str(out), max_side=32)
  with pytest.raises(errors.DataError, match="other files in it"):
    prepare_data.write_resized_copy(source, str(tmp_path / "images"), max_side=32)
  missing = tiny_config(**{"data.dataset": f"folder:{tmp_path / 'none'}"}).data
  with pytest.raises(errors.DataError, match="no directory"):
    prepare_data.write_resized_copy(missing, str(tmp_path / "copy2"), max_side=20)
  assert not (tmp_path / "copy2").exists()  # a refused source leaves no folder behind


def thumbnail_pixels(path, max_side):
  """PIL's thumbnail of the file, as the pixel store is documented to hold it."""
  with Image.open(path) as image:
    image.thumbnail((max_side, max_side), Image.BICUBIC)
    return np.asarray(image.convert("RGB"))


def test_a_pixel_store_holds_each_images_pixels_resumes_and_refuses_other_settings(
  tmp_path, monkeypatch
):
  write_folder(tmp_path / "images", ["n01", "n02"], per_class=3, size=40)
  Image.fromarray(np.zeros((30, 50, 3), np.uint8)).save(tmp_path / "images/train/n02/wide.png")
  (tmp_path / "images/train/n01/cut.jpg").write_bytes(b"")
  source = tiny_config(**{"data.dataset": f"folder:{tmp_path / 'images'}"}).data
  out = tmp_path / "store"
  monkeypatch.setattr(prepare_data, "SHARD_IMAGES", 2)  # train: 8 images in 4 files
  problems = prepare_data.write_pixel_store(source, str(out), max_side=20)
  assert [image for image, _ in problems] == [str(tmp_path / "images/train/n01/cut.jpg")]
  assert (out / "class_names.txt").read_text() == "n01\nn02\n"
  store = tiny_config(**{"data.dataset": f"pixels:{out}"}).data
  for split in ("train", "val"):
    original, stored = sources.load_split(source, split), sources.load_split(store, split)
    kept = [(f, label) for f, label in zip(original.source.files, original.source.labels)]
    kept = [(f, label) for f, label in kept if not f.endswith("cut.jpg")]
    assert len(stored) == len(kept) and stored.max_side == 20
    assert stored.class_names == original.class_names == ("n01", "n02")
    for (path, label), (pixels, stored_label) in zip(kept, (stored.source[i] for i in range(99))):
      assert stored_label == label
      np.testing.assert_array_equal(pixels, thumbnail_pixels(path, 20))
  assert stored.source[0][0].shape == (18, 20, 3)  # 40 high and 44 wide: at most 20 a side

  # Interrupted (a file missing, another half-written): the store is unfinished, in one line;
  # the same command finishes it and keeps the files already whole.
  shards = sorted((out / "train").iterdir())
  kept_at = shards[0].stat().st_mtime_ns
  shards[2].rename(shards[2].with_name(shards[2].name + ".partial"))
  with pytest.raises(errors.DataError, match=r"train split has 3 of its 4 files; the store is "):
    sources.load_split(store, "train")
  prepare_data.write_pixel_store(source, str(out), max_side=20)
  assert shards[0].stat().st_mtime_ns == kept_at and shards[2].exists()
  assert sorted((out / "train").iterdir()) == shards  # no .partial left
  assert len(sources.load_split(store, "train")) == 7
  with pytest.raises(errors.DataError, match=r"holds a copy made with .*'max_side': 20"):
    prepare_data.write_pixel_store(source, str(out), max_side=32)
  with pytest.raises(errors.DataError, match="other files in it"):
    prepare_data.write_pixel_store(source, str(tmp_path / "images"), max_side=32)

  # A damaged record is named with its file; so is a cut file.
  split = sources.load_split(store, "train")
  data = bytearray(shards[1].read_bytes())
  at = bytes(data).find(split.source[2][0].tobytes())  # the file's first record's pixels
  data[at + 30] ^= 0xFF
  shards[1].write_bytes(data)
  with pytest.raises(errors.DataError, match=rf"{shards[1]}: record 0 is damaged \(.*hash"):
    split.source[2]
  shards[1].write_bytes(data[:1000])
  with pytest.raises(errors.DataError, match=rf"{shards[1]}: the file is damaged"):
    sources.load_split(store, "train")


@pytest.mark.slow
def test_prepare_data_writes_a_pixel_store_and_refuses_a_missing_max_side_in_one_line(tmp_path):
  write_folder(tmp_path / "images", ["n01", "n02"], per_class=2)
  command = [
    sys.executable,
    "-m",
    "mobilenet_jax.prepare_data",
    f"--dataset=folder:{tmp_path / 'images'}",
    f"--pixel_store={tmp_path / 'store'}",
  ]
  refused = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
  assert refused.returncode != 0 and not (tmp_path / "store").exists()
  assert (
    refused.stderr.strip() == "error: --pixel_store needs --max_side=N (pixels, at least 1), not 0"
  )
  written = subprocess.run([*command, "--max_side=8"], capture_output=True, text=True, cwd=REPO)
  assert written.returncode == 0, written.stderr
  assert f"train with --config.data.dataset=pixels:{tmp_path / 'store'}" in written.stdout


@pytest.mark.slow
def test_a_run_trains_from_a_pixel_store_and_refuses_to_upsample_it_unless_asked(tmp_path):
  write_folder(tmp_path / "images", ["n01", "n02"], per_class=8, size=12)
  source = tiny_config(**{"data.dataset": f"folder:{tmp_path / 'images'}"}).data
  prepare_data.write_pixel_store(source, str(tmp_path / "store"), max_side=14)
  overrides = {
    "data.dataset": f"pixels:{tmp_path / 'store'}",
    "data.batch_size": 8,
    "data.eval_batch_size": 8,
    "model.num_classes": 2,
    "training.num_steps": 2,
  }
  with pytest.raises(
    errors.ConfigError, match=r"config.resolution=16 is above the 14 pixels a side"
  ):
    trainer.train_and_evaluate(tiny_config(**overrides), str(tmp_path / "refused"))
  assert not (tmp_path / "refused").exists()
  config = tiny_config(**overrides, **{"data.allow_upsampling": True})
  summary = trainer.train_and_evaluate(config, str(tmp_path / "run"))
  assert summary["status"] == "finished" and summary["eval_count"] == 16


def test_the_device_crops_are_pils_bilinear_resizes_of_the_same_boxes_within_one_level():
  rng = np.random.default_rng(0)
  # Noise smoothed a little: the hardest case for a resampler short of pure noise.
  image = np.asarray(
    Image.fromarray(rng.integers(0, 256, (75, 100, 3), np.uint8)).resize((200, 150))
  )
  canvas = jax.numpy.asarray(device_augment.canvas(image, 256)[0])
  resample = jax.jit(device_augment._resample)
  weights = jax.jit(device_augment.resample_weights, static_argnums=(4, 5))
  for resolution in (24, 96, 224):  # shrinking and growing
    for _ in range(5):
      left, top, right, bottom = pipeline.crop_box(150, 200, rng, 0.25)
      ours = resample(
        canvas,
        weights(top, bottom - top, 0, 150, 256, resolution),
        weights(left, right - left, 0, 200, 256, resolution),
      )
      theirs = Image.fromarray(image).resize(
        (resolution, resolution), Image.BILINEAR, box=(left, top, right, bottom)
      )
      difference = np.abs(np.asarray(ours, int) - np.asarray(theirs, int))
      # PIL rounds to 8 bits between its two passes; the device does not.
      assert difference.max() <= 1 and difference.mean() < 0.25
  sizes = np.array([[150, 200]], np.int32)
  for resolution in (24, 224):
    ours = device_augment.central_crops(canvas[None], sizes, resolution, 0.875)[0]
    theirs = pipeline.central_crop(image, resolution, 0.875)
    difference = np.abs(np.asarray(ours, int) - theirs.astype(int))
    assert difference.max() <= 1 and difference.mean() < 0.25


def test_the_device_crop_boxes_have_the_hosts_distribution():
  from scipy import stats

  count, height, width = 2000, 150.0, 200.0
  keys = jax.random.split(jax.random.key(0), count)
  boxes = jax.jit(jax.vmap(lambda key: device_augment.crop_box(key, height, width, 0.25)))(keys)
  top, left, crop_h, crop_w = (np.asarray(b) for b in boxes)
  assert np.all((top >= 0) & (top + crop_h <= height) & (left >= 0) & (left + crop_w <= width))
  rng = np.random.default_rng(0)
  host = np.array([pipeline.crop_box(150, 200, rng, 0.25) for _ in range(count)], float)
  host_w, host_h = host[:, 2] - host[:, 0], host[:, 3] - host[:, 1]
  for ours, theirs in (
    (crop_h * crop_w, host_h * host_w),  # area
    (np.log(crop_w / crop_h), np.log(host_w / host_h)),  # aspect
  ):
    assert stats.ks_2samp(ours, theirs).pvalue > 0.01
  # Placement: an integer uniform over the free rows (discrete: compared by its moments).
  for placed in ((top + 0.5) / (height - crop_h + 1), (host[:, 1] + 0.5) / (height - host_h + 1)):
    assert abs(placed.mean() - 0.5) < 0.02 and abs(placed.std() - 12**-0.5) < 0.02


def test_crops_on_the_device_are_drawn_from_each_examples_place_in_the_stream():
  config = tiny_config(**{"data.augment_on_device": True, "data.batch_size": 8})
  split = sources.load_split(config.data, "train")
  (canvases, sizes, places), labels = pipeline.train_batches(split, config)[3]
  np.testing.assert_array_equal(places, np.arange(24, 32))  # step 3's examples
  assert canvases.shape == (8, 8, 8, 3) and sizes.tolist() == [[8, 8]] * 8  # digits: 8x8
  # A function of (seed, place) alone: an example crops alike wherever the batch puts it (on
  # any process or device), and another seed crops it otherwise.
  crops = jax.jit(device_augment.train_crops, static_argnums=(4,))
  ours = np.asarray(crops(canvases, sizes, places, 0, 16, 0.6))
  np.testing.assert_array_equal(
    ours, crops(canvases[::-1], sizes[::-1], places[::-1], 0, 16, 0.6)[::-1]
  )
  assert not np.array_equal(ours, crops(canvases, sizes, places, 1, 16, 0.6))


def test_pixels_on_the_device_give_the_hosts_batches_as_indices():
  config = tiny_config(**{"data.augment_on_device": True, "data.pixels_on_device": True})
  split = sources.load_split(config.data, "train")
  stored = pipeline.stored_pixels(split, config, 8)
  assert stored.canvases.shape == (1440, 8, 8, 3) and not stored.canvases[1437:].any()
  on_host = pipeline.train_batches(split, config)
  on_device = pipeline.train_batches(split, config, stored_labels=stored.labels)
  in_memory = pipeline.train_batches(split, config, host_pixels=stored)
  for step in (0, 3, 22, 23):  # 1,437 digits: step 22 crosses into the second epoch
    (canvases, sizes, places), labels = on_host[step]
    (indices, device_places), device_labels = on_device[step]
    np.testing.assert_array_equal(stored.canvases[indices], canvases)
    np.testing.assert_array_equal(stored.sizes[indices], sizes)
    np.testing.assert_array_equal(device_places, places)
    np.testing.assert_array_equal(device_labels, labels)
    for held, sent in zip(jax.tree.leaves(in_memory[step]), jax.tree.leaves(on_host[step])):
      assert held.dtype == sent.dtype
      np.testing.assert_array_equal(held, sent)
  whole = pipeline.train_batches(split, config, whole=True, stored_labels=stored.labels)[5]
  np.testing.assert_array_equal(whole[0][1], np.arange(320, 384))


@pytest.mark.parametrize("count", [1, 3, 1797, 65536, 65537, 70001])
def test_an_epochs_order_at_once_is_grains_shuffle_of_it(count):
  """Block widths' edges included: 65,537 examples need 16 bits to hold 65,536 and get 16, as
  grain's cipher does (its place 65,536 lands where place 0 does). 3 and 1,797 places walk the
  whole domain's cycles at once, the others each place's."""
  for seed in (0, 2**32 - 1):
    shuffled = grain.MapDataset.source(range(count)).seed(seed).shuffle()
    for epoch in (0, 1):
      places = epoch * count + np.arange(min(count, 2000))
      order = pipeline.epoch_order(count, (shuffled._seed + epoch) % 2**32)
      np.testing.assert_array_equal(order[places % count], [shuffled[int(p)] for p in places])


def test_held_pixels_are_for_crops_on_the_device_and_must_fit_where_they_are_held():
  for key in ("pixels_on_device", "pixels_in_host_memory"):
    with pytest.raises(errors.ConfigError, match=rf"^config.data.{key}=True needs config.data.aug"):
      config_lib.validate(tiny_config(**{f"data.{key}": True}))
  cropped = {"data.augment_on_device": True}
  with pytest.raises(errors.ConfigError, match=r"are both True: the canvases are held in one pl"):
    config_lib.validate(
      tiny_config(**cropped, **{"data.pixels_on_device": True, "data.pixels_in_host_memory": True})
    )
  with pytest.raises(
    errors.ConfigError,
    match=r"^config.data.pixels_in_host_memory=True with config.data.worker_processes=2: .* set "
    r"worker_processes=0$",
  ):
    config_lib.validate(
      tiny_config(**cropped, **{"data.pixels_in_host_memory": True, "data.worker_processes": 2})
    )
  for key, where in (
    ("pixels_on_device", "1024.0 GiB on each of the 4 devices they are sharded over"),
    ("pixels_in_host_memory", "4096.0 GiB in this process's memory"),
  ):
    held = tiny_config(**cropped, **{f"data.{key}": True})
    with pytest.raises(
      errors.ConfigError,
      match=rf"^config.data.{key}=True: the training split's canvases take {where}, over half of "
      r"their .* GiB; leave it False \(",
    ):
      trainer.check_pixels_fit(held, 2**42, 4)
    trainer.check_pixels_fit(held, 2**20, 1)


def test_crops_on_the_device_need_stored_pixels(tmp_path):
  write_folder(tmp_path / "images", ["n01", "n02"], per_class=2)
  config = tiny_config(
    **{
      "data.dataset": f"folder:{tmp_path / 'images'}",
      "data.augment_on_device": True,
      "data.batch_size": 4,
      "model.num_classes": 2,
    }
  )
  with pytest.raises(errors.ConfigError, match=r"augment_on_device=True needs stored pixels"):
    trainer.train_and_evaluate(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_worker_processes_give_the_same_batches_from_any_step():
  config = tiny_config()
  batches = pipeline.train_batches(sources.load_split(config.data, "train"), config)
  in_threads, in_processes = (
    pipeline.iterate(batches, 21),
    pipeline.iterate(batches, 21, processes=2),
  )
  for step in range(21, 25):  # across the first epoch's end (22 batches)
    threads_batch, processes_batch = next(in_threads), next(in_processes)
    np.testing.assert_array_equal(threads_batch[0], processes_batch[0])
    np.testing.assert_array_equal(threads_batch[1], batches[step][1])
    np.testing.assert_array_equal(processes_batch[1], batches[step][1])
