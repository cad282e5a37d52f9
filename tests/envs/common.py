"""Helpers shared by the environment tests."""

from g2po_jax.envs import base


def play(env: base.BatchEnv, seeds, policy, max_steps: int = base.BatchEnv.max_steps):
  """Steps a fresh batch until done or `max_steps`; returns every TimeStep.

  policy(t, timesteps) gives the actions of step t (None for done ones).
  Returns (the TimeSteps of every step, the latest TimeStep of each instance).
  """
  history = [env.reset(seeds)]
  live = history[0]
  for t in range(max_steps):
    actions = policy(t, live)
    if all(a is None for a in actions):
      break
    out = env.step(actions)
    history.append(out)
    live = [o if o is not None else ts for o, ts in zip(out, live)]
  return history, live
