r"""Exports the trained policy of a training workdir as a Hugging Face directory.

  python -m experiments.export --workdir=runs/g2po --out=runs/g2po_hf

Reads the newest readable checkpoint's policy, the run's config.json and its
tokenizer; writes config.json, safetensors weights, the tokenizer (with its
chat template) and generation_config.json. See g2po_jax/export.py.
"""

import sys

from absl import app
from absl import flags
from absl import logging

from g2po_jax import export as export_lib

_WORKDIR = flags.DEFINE_string('workdir', None, 'A training workdir (experiments.train).')
_OUT = flags.DEFINE_string('out', None, 'The Hugging Face directory to write (new or empty).')
flags.mark_flags_as_required(['workdir', 'out'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  try:
    step = export_lib.export(_WORKDIR.value, _OUT.value)
  except ValueError as e:
    sys.exit(f'error: {e}')
  logging.info('exported checkpoint %d of %s to %s', step, _WORKDIR.value, _OUT.value)


if __name__ == '__main__':
  app.run(main)
