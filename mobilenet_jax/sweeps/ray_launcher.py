"""Sweep members as Ray tasks: `launch.py --sweep=FILE --launcher=ray [--ray_address=...]`.

Each member runs the same launch.py command line as the local launcher, in a Ray task that asks
for the member's `config.resources`; a member with `resources.processes = N` is N tasks in one
placement group, joined by jax.distributed with process 0's node as the coordinator. The sweep's
workdir, the repository and its Python environment must be at the same paths on every node (a
shared filesystem, or one image on every node); a member's files are written by the node that
runs it. A task whose worker or node dies is launched again (all N tasks of a multi-process
member together), up to `resources.max_retries` times, and resumes from its last checkpoint.
"""

import os
import shlex
import signal
import socket
import subprocess
import sys
import time

import ray
from ray.util import scheduling_strategies
from ray.util.placement_group import placement_group, remove_placement_group

from mobilenet_jax.config import schema as config_lib
from mobilenet_jax.config import workdir as workdir_lib
from mobilenet_jax.core import errors
from mobilenet_jax.sweeps import definition, launching

# Forwarded from the launcher to every member: JAX, XLA, W&B and TFDS settings. Device
# visibility (CUDA_VISIBLE_DEVICES, TPU_VISIBLE_CHIPS) is Ray's to set on each node.
FORWARDED_ENV_PREFIXES = ("JAX_", "XLA_", "WANDB_", "TFDS_")
LOCK_WAIT_S = 300  # a relaunched member waits this long for its killed attempt to checkpoint


def _wait_for_workdir(workdir):
  """Blocks until no other process holds `workdir` (a dead attempt's member may still be writing
  its SIGTERM checkpoint), or LOCK_WAIT_S pass; launch.py then reports a holder that stays."""
  deadline = time.time() + LOCK_WAIT_S
  while time.time() < deadline:
    try:
      with workdir_lib.WorkdirLock(workdir):
        return
    except errors.WorkdirBusy:
      time.sleep(1)


def _free_port():
  with socket.socket() as s:
    s.bind(("", 0))
    return s.getsockname()[1]


@ray.remote(num_cpus=0)
def _coordinator_address():
  """Process 0's node address and a free port on it, for jax.distributed."""
  return f"{ray.util.get_node_ip_address()}:{_free_port()}"


@ray.remote(max_retries=0)
def _run_process(command, env, log_path, workdir, header):
  """One member process on this node; Ray's cancel (the launcher's Ctrl-C) becomes SIGTERM, on
  which the member checkpoints and stops. Returns its exit code."""
  if workdir:
    _wait_for_workdir(workdir)
  with open(log_path, "a") as log:
    log.write(
      f"{header} on {socket.gethostname()} ({ray.util.get_node_ip_address()}), Ray "
      f"worker pid {os.getpid()}, resources "
      f"{ray.get_runtime_context().get_assigned_resources()}\n"
      f"$ {shlex.join(command)}\n"
    )
    log.flush()
    process = subprocess.Popen(
      command,
      cwd=definition.REPO,
      env={**os.environ, **env},
      stdout=log,
      stderr=subprocess.STDOUT,
      preexec_fn=launching.die_with_parent,
    )
    try:
      while process.poll() is None:  # polled: Ray's cancel is raised between bytecodes
        time.sleep(0.5)
    except KeyboardInterrupt:
      process.send_signal(signal.SIGTERM)
      process.wait()
    return process.returncode


def _resources(member, extra_overrides):
  """The member's config.resources; the defaults where its config is broken (it then fails
  alone, with its own error, when launch.py starts)."""
  try:
    return config_lib.validate(definition.member_config(member, extra_overrides)).resources
  except (errors.UserError, KeyError, ValueError, TypeError, SyntaxError):
    return config_lib.base_config().resources


def _bundle(resources):
  """What one process asks for, as a placement-group bundle: {'CPU': 1.0, ...}, zeros left out."""
  asks = {"CPU": resources.cpus, "GPU": resources.gpus, "TPU": resources.tpus}
  return {k: v for k, v in asks.items() if v}


def _describe(resources):
  bundle = ", ".join(f"{k}: {v:g}" for k, v in _bundle(resources).items())
  return f"{resources.processes} x {{{bundle}}}"


def check_address(address, timeout_s):
  """A HOST:PORT where no Ray cluster answers is one line, before the sweep writes anything: Ray
  itself would retry for ever. 'auto' and a local cluster (None) are Ray's to find."""
  if address in (None, "auto") or address.startswith("ray://"):
    return
  host, sep, port = address.rpartition(":")
  if not sep or not port.isdigit():
    raise errors.UserError(f"--ray_address={address}: expected 'auto' or HOST:PORT")
  try:
    socket.create_connection((host, int(port)), timeout=timeout_s).close()
  except OSError as error:
    raise errors.UserError(
      f"--ray_address={address}: no Ray cluster answers there ({error.strerror or error}, "
      f"--ray_connect_timeout_s={timeout_s:g}); start one on {host} with `ray start --head "
      f"--port={port}`, or omit --ray_address to start one for this sweep"
    ) from None


def unplaceable(resources, nodes):
  """Why a member's processes can never be placed on `nodes` (each node's resource totals), or
  '' when they can: no node holds one process's bundle, or the cluster not all of them."""
  bundle = _bundle(resources)
  for key, wanted in bundle.items():
    most = max((node.get(key, 0) for node in nodes), default=0)
    if most < wanted:
      return (
        f"it asks for {key}: {wanted:g} per process and no node of the cluster has more "
        f"than {most:g}"
      )
    total = sum(node.get(key, 0) for node in nodes)
    if total < wanted * resources.processes:
      return (
        f"it asks for {key}: {wanted * resources.processes:g} over {resources.processes} "
        f"processes and the cluster has {total:g}"
      )
  return ""


class _Attempt:
  """One launch of a member: its N process tasks and, for N > 1, their placement group."""

  def __init__(self, sweep, member, workdir, extra_overrides, env, resources, number):
    self.member, self.number, self.resources = member, number, resources
    member_dir = os.path.join(workdir, member.name)
    os.makedirs(member_dir, exist_ok=True)
    command = definition.member_command(sweep, member, workdir, extra_overrides)
    asks = {
      "num_cpus": resources.cpus,
      "num_gpus": resources.gpus,
      "resources": {"TPU": resources.tpus} if resources.tpus else {},
    }
    n = resources.processes
    self.group, per_process = None, [({}, [])]
    if n > 1:
      self.group = placement_group([_bundle(resources)] * n, strategy=resources.placement)
      in_bundle = [
        scheduling_strategies.PlacementGroupSchedulingStrategy(
          self.group, placement_group_bundle_index=i
        )
        for i in range(n)
      ]
      coordinator = ray.get(_coordinator_address.options(scheduling_strategy=in_bundle[0]).remote())
      per_process = [
        (
          {"scheduling_strategy": in_bundle[i]},
          [f"--coordinator_address={coordinator}", f"--num_processes={n}", f"--process_id={i}"],
        )
        for i in range(n)
      ]
    self.refs = [
      _run_process.options(**asks, **placement).remote(
        command + distributed,
        env,
        os.path.join(member_dir, "launch.log" if i == 0 else f"launch.{i}.log"),
        member_dir if i == 0 else None,
        f"[ray] attempt {number + 1}, process {i + 1}/{n}",
      )
      for i, (placement, distributed) in enumerate(per_process)
    ]

  def done(self):
    ready, pending = ray.wait(self.refs, num_returns=len(self.refs), timeout=0)
    if pending and any(_died(ref) for ref in ready):
      self.cancel()  # the other processes would wait for the dead one in every collective
    return not pending

  def exit_code(self):
    """Process 0's exit code, or None when a worker or node died under any process."""
    return None if any(_died(ref) for ref in self.refs) else ray.get(self.refs[0])

  def cancel(self):
    for ref in self.refs:
      ray.cancel(ref)

  def release(self):
    if self.group:
      remove_placement_group(self.group)


def _died(ref):
  """Whether the finished task `ref` ended without returning (its worker or node died)."""
  try:
    ray.get(ref, timeout=0)
    return False
  except ray.exceptions.RayError:
    return True


class _LogFollower:
  """Prints what members write to their launch.log from now on, tqdm's carriage-return updates
  as lines of their own."""

  def __init__(self, workdir, out):
    self.workdir, self.out, self.offsets = workdir, out, {}

  def _path(self, member):
    return os.path.join(self.workdir, member.name, "launch.log")

  def start(self, member):
    path = self._path(member)
    self.offsets[member.name] = os.path.getsize(path) if os.path.exists(path) else 0

  def follow(self, member):
    if not os.path.exists(self._path(member)):
      return
    with open(self._path(member), "rb") as f:
      f.seek(self.offsets[member.name])
      text = f.read().decode(errors="replace")
    complete = max(text.rfind("\n"), text.rfind("\r")) + 1
    self.offsets[member.name] += len(text[:complete].encode())
    for line in text[:complete].replace("\r", "\n").splitlines():
      if line.strip():
        print(f"  {member.name} | {line.strip()}", file=self.out, flush=True)


def run_members(
  sweep,
  members,
  workdir,
  extra_overrides,
  record,
  address=None,
  wait_for_resources=False,
  out=sys.stdout,
):
  """Runs `members` on the Ray cluster at `address` (None: a local one), all submitted at once
  and scheduled by Ray as resources free up; calls record(member, status) as each starts and ends.
  A member that asks for more than the cluster has fails at once, unless `wait_for_resources`
  (a cluster that autoscales). Ctrl-C or SIGTERM cancels the running members' tasks, which
  checkpoint and stop."""
  ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
  nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
  env = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV_PREFIXES)}
  env.update(launching.compilation_cache_env(workdir))
  followed = _LogFollower(workdir, out)
  running, stopping = [], False

  def stop(*_):
    nonlocal stopping
    stopping = True
    for attempt in running:
      attempt.cancel()

  previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
  try:
    for member in members:
      resources = _resources(member, extra_overrides)
      why = "" if wait_for_resources else unplaceable(resources, nodes)
      if why:
        record(member, f"failed: {why} (--ray_wait_for_resources waits for an autoscaler)")
        continue
      followed.start(member)
      running.append(_Attempt(sweep, member, workdir, extra_overrides, env, resources, 0))
      record(member, f"submitted to Ray, asking for {_describe(resources)}")
    while running:
      time.sleep(0.5)
      for attempt in list(running):
        followed.follow(attempt.member)
        if not attempt.done():
          continue
        running.remove(attempt)
        attempt.release()
        followed.follow(attempt.member)
        code, retries = attempt.exit_code(), attempt.resources.max_retries
        if code is not None or stopping:
          record(attempt.member, launching.ended_status(workdir, attempt.member, code, stopping))
        elif attempt.number < retries:
          record(
            attempt.member, f"its worker or node died; relaunched (attempt {attempt.number + 2})"
          )
          running.append(
            _Attempt(
              sweep,
              attempt.member,
              workdir,
              extra_overrides,
              env,
              attempt.resources,
              attempt.number + 1,
            )
          )
        else:
          record(
            attempt.member,
            f"failed: its worker or node died {retries + 1} times "
            f"(config.resources.max_retries={retries})",
          )
  finally:
    for s, handler in previous.items():
      signal.signal(s, handler)
    ray.shutdown()
