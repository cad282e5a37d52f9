"""TensorBoard logging (process 0 only) and the console progress line."""

import io
import logging as std_logging
import os
import time

from absl import logging
import jax
import numpy as np
from tensorboard.backend.event_processing import event_file_loader
from tensorboardX import event_file_writer
from tensorboardX import record_writer
from tensorboardX import summary as tb_summary
from tensorboardX.proto import event_pb2


def console_logging() -> None:
  """INFO logging for our progress lines, without the libraries' chatter.

  Orbax narrates every save at INFO, and JAX reports at INFO each backend
  it probes and does not find (TPU on a CPU machine); warnings still show.
  """
  logging.set_verbosity(logging.INFO)
  chatty = ('orbax', 'xla_bridge.py')
  logging.get_absl_handler().addFilter(
      lambda record: record.levelno >= std_logging.WARNING
      or not any(name in record.pathname for name in chatty))


class Writer:
  """Scalars and images to TensorBoard event files in `logdir`, synchronously.

  tensorboardX's SummaryWriter queues events for a background thread and
  its `flush` does not drain that queue, so a kill -9 right after a
  checkpoint lost scalars of the checkpointed iteration. Here every event is
  written by the caller and `flush` fsyncs the file: once `flush` returns,
  what was logged survives the process.

  Only process 0 writes; on other processes every call does nothing.
  """

  def __init__(self, logdir: str, purge_after: int | None = None):
    """purge_after: drop logged events of later steps first (a run resumed
    after step `purge_after` logs those steps again)."""
    self._writer = None
    if jax.process_index() == 0:
      os.makedirs(logdir, exist_ok=True)
      if purge_after is not None:
        purge_events(logdir, purge_after)
      self._writer = event_file_writer.EventsWriter(
          os.path.join(logdir, 'events'), filename_suffix=f'.{os.getpid()}.{time.time_ns()}')

  def _add(self, step: int, summary) -> None:
    self._writer.write_event(event_pb2.Event(wall_time=time.time(), step=int(step),
                                             summary=summary))

  def scalars(self, step: int, values: dict[str, float]) -> None:
    if self._writer is None:
      return
    for key, value in values.items():
      if np.isfinite(value):
        self._add(step, tb_summary.scalar(key, float(value)))

  def image(self, step: int, tag: str, png: bytes) -> None:
    """Adds a PNG image."""
    if self._writer is None:
      return
    from PIL import Image  # matplotlib's dependency; only needed here
    img = np.asarray(Image.open(io.BytesIO(png)).convert('RGB'))
    self._add(step, tb_summary.image(tag, img, dataformats='HWC'))

  def flush(self) -> None:
    """Writes everything logged so far to disk (fsync) before returning."""
    if self._writer is not None:
      self._writer.flush()

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
      self._writer = None


def purge_events(logdir: str, last_step: int) -> int:
  """Removes events of steps after `last_step` from the event files in logdir.

  Each file is rewritten beside itself and renamed over it, so a crash
  leaves either the old or the new file. A record cut short by a kill at the
  end of a file is dropped. Returns the number of events removed.
  """
  removed = 0
  for name in sorted(os.listdir(logdir)):
    path = os.path.join(logdir, name)
    if 'tfevents' not in name or not os.path.isfile(path):
      continue
    kept, dropped = [], 0
    for raw in event_file_loader.RawEventFileLoader(path).Load():
      event = event_pb2.Event.FromString(raw)
      if event.step > last_step and event.WhichOneof('what') != 'file_version':
        dropped += 1
      else:
        kept.append(raw)
    if not dropped:
      continue
    partial = path + '.purging'
    writer = record_writer.RecordWriter(partial)
    for raw in kept:
      writer.write(raw)
    writer.flush()
    writer.close()
    os.replace(partial, path)
    removed += dropped
  if removed:
    logging.info('removed %d TensorBoard events after step %d (logged again on resume)',
                 removed, last_step)
  return removed


class Progress:
  """One console line per iteration: success, throughput and ETA."""

  def __init__(self, total: int, start: int, show_format: bool = False):
    """show_format: add the format-error rate and the mean response length
    (protocols whose responses can break their format)."""
    self.total, self.start, self.show_format = total, start, show_format
    self.t0 = time.perf_counter()

  def line(self, iteration: int, values: dict[str, float]) -> str:
    done = iteration + 1 - self.start
    elapsed = time.perf_counter() - self.t0
    eta = elapsed / max(done, 1) * (self.total - iteration - 1)
    text = (f'iter {iteration + 1}/{self.total} | success {values["rollout/success"]:.2f} '
            f'| len {values["rollout/episode_length"]:.1f} '
            f'| invalid {values["rollout/invalid_rate"]:.2f} ')
    if self.show_format:
      text += (f'| format {values["rollout/format_error_rate"]:.2f} '
               f'| resp {values["rollout/response_length"]:.0f} tok ')
    text += (f'| {values["throughput/env_steps_per_s"]:.0f} steps/s '
             f'| {values["time/iteration"]:.1f} s/iter | ETA {_clock(eta)}')
    if 'eval/success' in values:
      text += f' | eval {values["eval/success"]:.2f}'
    return text

  def log(self, iteration: int, values: dict[str, float]) -> None:
    logging.info(self.line(iteration, values))


def _clock(seconds: float) -> str:
  m, s = divmod(int(seconds), 60)
  h, m = divmod(m, 60)
  return f'{h}h{m:02d}m' if h else f'{m}m{s:02d}s'
