"""The speed benchmark's timing discipline (the speeds themselves live in benchmarks/README.md)."""

from benchmarks import speed


def test_contenders_take_turns_within_each_repeat():
  calls = []
  contenders = {name: {"train": lambda name=name: calls.append((name, "train")),
                       "latency": lambda name=name: calls.append((name, "latency"))}
                for name in ("jax", "torch")}
  medians = speed.time_in_turns(contenders, iters=2, repeats=3)
  # One untimed call opens every turn.
  one_repeat = ([("jax", "train")] * 3 + [("jax", "latency")] * 9 + [("torch", "train")] * 3
                + [("torch", "latency")] * 9)
  assert calls == one_repeat * 3
  assert set(medians) == {"jax", "torch"}
  assert all(seconds > 0 for measures in medians.values() for seconds in measures.values())
