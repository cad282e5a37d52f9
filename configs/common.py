"""Shared pieces of the experiment configs (big_vision style)."""

import ml_collections as mlc
from ml_collections import config_dict

from g2po_jax.train.config import ConfigError

# Credit options are placeholders: None means "the estimator's own default"
# (spec ALGORITHMS.md); a value set for an option the chosen estimator does
# not use is an error at start-up.
_CREDIT_OPTIONS = {
    'norm': str, 'gamma': float, 'penalty': float, 'episode_weight': float,
    'node_weight': float, 'edge_weight': float, 'td_form': str, 'td_gamma': float,
    'step_weight': float, 'omega': float, 'distance_form': str, 'alpha': float,
    'lam': float, 'level': str,
}


def parse_arg(arg: str | None, **defaults) -> mlc.ConfigDict:
  """Parses 'a=1,b=x,flag' (the text after ':' in --config=file.py:arg).

  Keys must be among `defaults`; a bare key sets a boolean default to True.
  Raises ConfigError (a ValueError) naming an unknown key or a bad value.
  """
  out = mlc.ConfigDict(defaults)
  for item in filter(None, (arg or '').split(',')):
    key, _, value = item.partition('=')
    if key not in defaults:
      raise ConfigError(f'unknown config arg {key!r}; known: {", ".join(defaults)}.')
    default = defaults[key]
    if isinstance(default, bool):
      out[key] = value.lower() in ('', '1', 'true', 'yes')
    elif default is None:
      out[key] = value
    else:
      try:
        out[key] = type(default)(value)
      except ValueError:
        raise ConfigError(f'config arg {key}={value!r} must be a {type(default).__name__}.'
                          ) from None
  return out


def base_config() -> mlc.ConfigDict:
  """Every key the trainer reads, with the published defaults where they exist."""
  c = mlc.ConfigDict()
  c.seed = 0
  c.num_iterations = 100

  c.env = mlc.ConfigDict()
  c.env.name = 'household-small'
  c.env.max_steps = 25
  c.env.kwargs = mlc.ConfigDict()               # the environment's own knobs

  c.rollout = mlc.ConfigDict()
  c.rollout.num_tasks = 16                      # tasks per iteration [16]
  c.rollout.group_size = 8                      # attempts per task [8]
  c.rollout.history = 2                         # (observation, action) pairs in the prompt [2]
  c.rollout.prompt_len = 512                    # prompts are cut from the left to this
  c.rollout.max_new_tokens = 16
  c.rollout.temperature = 1.0                   # [1.0]
  c.rollout.top_p = 1.0
  c.rollout.top_k = 0
  # 'line': one-line actions after a plain prompt (the CPU demo). 'think_action':
  # the papers' recipe, a chat-template user message per step and a reply
  # <think>...</think><action>...</action>, stopped right after </action>.
  c.rollout.protocol = 'line'
  c.rollout.system_prompt = config_dict.placeholder(str)   # think_action only
  # Rows of a sampler call with the very same prompt are prefilled once (the
  # same tokens are drawn either way).
  c.rollout.share_prompts = True

  c.credit = mlc.ConfigDict()
  c.credit.name = 'g2po'     # grpo | rloo | gigpo | g2po | graphgpo | hgpo | gagpo | ppo
  c.credit.success_reward = 10.0                # the env's win reward is scaled to this
  for key, kind in _CREDIT_OPTIONS.items():
    c.credit[key] = config_dict.placeholder(kind)

  # Which steps share a graph node (g2po_jax.graph.matching): 'exact' state
  # keys, 'normalized' (the environment's regex rules, then `rules`), 'near'
  # (MinHash + LSH + a verified `metric` >= `similarity`) or 'difflib'
  # (GiGPO's SequenceMatcher ratio >= `similarity`, greedy).
  c.graph = mlc.ConfigDict()
  c.graph.matching = 'exact'
  c.graph.similarity = 0.9
  c.graph.metric = 'jaccard'                    # near only: 'jaccard' | 'cosine'
  c.graph.rules = ()                            # extra (pattern, replacement) pairs

  c.model = mlc.ConfigDict()
  c.model.preset = 'tiny'
  c.model.dtype = 'float32'
  c.model.param_dtype = 'float32'
  c.model.remat = False
  # A policy directory written by experiments/sft.py or a Hugging Face Qwen2
  # directory; None trains from scratch with a word tokenizer of the env.
  c.model.init_from = config_dict.placeholder(str)
  # The tokenizer of a fresh model (init_from unset): '' builds a word
  # tokenizer of the env's vocabulary; 'bpe' a small ChatML BPE trained on
  # the env's texts (g2po_jax/bpe.py); 'qwen2.5' the real Qwen2.5 tokenizer
  # (built offline, cached); or a directory holding a tokenizer.
  c.model.tokenizer = ''
  c.model.num_layers = config_dict.placeholder(int)   # a fresh model's depth (None: the preset's)

  c.optim = mlc.ConfigDict()
  c.optim.lr = 1e-6                             # [1e-6]
  c.optim.warmup_steps = 0
  c.optim.b1 = 0.9
  c.optim.b2 = 0.999
  c.optim.weight_decay = 0.01
  c.optim.grad_clip = 1.0

  c.ppo = mlc.ConfigDict()
  c.ppo.clip = 0.2                              # [0.2]
  c.ppo.kl_coef = 0.01                          # low-variance KL to the reference [0.01]
  c.ppo.entropy_coef = 0.001                    # [0.001]
  c.ppo.epochs = 1                              # [1]
  c.ppo.minibatch_size = 128                    # samples (env steps) per update
  # One importance ratio per action (GAGPO's loss); None: on for gagpo only.
  c.ppo.action_ratio = config_dict.placeholder(bool)
  c.ppo.value_coef = 0.5                        # PPO with a critic only
  c.ppo.max_bad_steps = 3                       # stop after this many non-finite updates in a row
  c.ppo.logit_chunk = 1024                      # scored tokens per LM-head block (peak memory)
  # Samples with the very same prompt share one row of the update: the prompt
  # once, then each response (scored exactly as alone).
  c.ppo.pack_shared_prompts = True

  # The warm start (experiments/sft.py): imitation of a noisy oracle, stopped
  # once the policy reaches target_success on unseen tasks at the rollout
  # temperature, so RL starts where the papers' instruction models start.
  c.sft = mlc.ConfigDict()
  c.sft.demo_tasks = 400                        # tasks of noisy-oracle demonstrations
  c.sft.noise = 0.3                             # share of random actions while demonstrating
  c.sft.invalid = 0.0                           # ... and of inadmissible ones (demos.play)
  c.sft.lr = 1e-3
  c.sft.batch_size = 64
  c.sft.max_updates = 3000
  c.sft.eval_every = 100
  c.sft.target_success = 0.25
  c.sft.max_invalid_rate = 1.0                  # ... and at most this invalid-action rate

  c.eval = mlc.ConfigDict()
  c.eval.every = 10                             # iterations; 0 = never
  c.eval.num_tasks = 64                         # unseen tasks, one attempt each
  c.eval.temperature = 0.4                      # [0.4]; 0 = greedy

  c.log_every = 1
  c.graph_image_every = 0                       # TensorBoard picture of a task's graph
  c.ckpt = mlc.ConfigDict()
  c.ckpt.every = 10
  c.ckpt.keep = 3

  c.mesh = mlc.ConfigDict()
  c.mesh.data = -1                              # -1: all remaining devices
  c.mesh.fsdp = 1
  return c


def shrink_for_runlocal(c: mlc.ConfigDict, max_steps: int = 6) -> None:
  """Sizes a config down to a smoke run of seconds (the `:runlocal` arg)."""
  c.rollout.num_tasks = 2
  c.rollout.group_size = 4
  c.env.max_steps = max_steps
  c.num_iterations = 2
  c.eval.num_tasks = 4
  c.eval.every = 2
  c.ckpt.every = 1
