"""TensorBoard logging (process 0 only) and the console progress line."""

import io
import logging as std_logging
import time

from absl import logging
import jax
import numpy as np
import tensorboardX


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
  """Scalars, text and images to TensorBoard event files in `logdir`.

  Only process 0 writes; on other processes every call does nothing.
  """

  def __init__(self, logdir: str):
    self._writer = tensorboardX.SummaryWriter(logdir) if jax.process_index() == 0 else None

  def scalars(self, step: int, values: dict[str, float]) -> None:
    if self._writer is None:
      return
    for key, value in values.items():
      if np.isfinite(value):
        self._writer.add_scalar(key, float(value), step)

  def text(self, step: int, tag: str, text: str) -> None:
    if self._writer is not None:
      self._writer.add_text(tag, text, step)

  def image(self, step: int, tag: str, png: bytes) -> None:
    """Adds a PNG image."""
    if self._writer is None:
      return
    from PIL import Image  # matplotlib's dependency; only needed here
    img = np.asarray(Image.open(io.BytesIO(png)).convert('RGB'))
    self._writer.add_image(tag, img, step, dataformats='HWC')

  def flush(self) -> None:
    if self._writer is not None:
      self._writer.flush()

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()


class Progress:
  """One console line per iteration: success, throughput and ETA."""

  def __init__(self, total: int, start: int):
    self.total, self.start = total, start
    self.t0 = time.perf_counter()

  def line(self, iteration: int, values: dict[str, float]) -> str:
    done = iteration + 1 - self.start
    elapsed = time.perf_counter() - self.t0
    eta = elapsed / max(done, 1) * (self.total - iteration - 1)
    text = (f'iter {iteration + 1}/{self.total} | success {values["rollout/success"]:.2f} '
            f'| len {values["rollout/episode_length"]:.1f} '
            f'| invalid {values["rollout/invalid_rate"]:.2f} '
            f'| {values["throughput/env_steps_per_s"]:.0f} steps/s '
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
