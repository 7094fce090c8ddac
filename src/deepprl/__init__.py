"""deepprl: Deep Pareto Reinforcement Learning for multi-objective recommender systems."""

__version__ = "0.1.0"

from deepprl.envs import register_environments as _register_environments

_register_environments()
