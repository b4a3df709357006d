"""The one entry point (its flags and modes: mobilenet_jax/modes.py).

  python launch.py --config=configs/mobilenet_v2.py --config.model.width_multiplier=0.75 \
      --config.resolution=160 --mode=profile
  python launch.py --config=configs/mobilenet_v2.py:width=0.5,res=160 --workdir=runs/v2
  python launch.py --sweep=experiments/quickstart.py --workdir=runs/quickstart [--jobs=2]
  python launch.py --sweep=experiments/v2_tradeoff.py --workdir=/shared/runs/v2 --launcher=ray \
      --ray_address=auto
  python launch.py --mode=report --workdir=runs/quickstart
  python launch.py --config=configs/tiny.py --mode=eval --workdir=runs/tiny
  python launch.py --config=configs/tiny.py --mode=export --workdir=runs/tiny --format=onnx --int8
  python launch.py --mode=keys
"""

from mobilenet_jax.core import runtime

if __name__ == "__main__":
  # glibc reads its tunables when a process starts: re-execute before JAX and XLA load.
  runtime.reexec_with_huge_pages()

from absl import app  # noqa: E402

from mobilenet_jax import modes  # noqa: E402

if __name__ == "__main__":
  app.run(modes.main, flags_parser=modes.parse_flags)
