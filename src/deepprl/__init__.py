"""deepprl: Deep Pareto Reinforcement Learning for multi-objective recommender systems."""

__version__ = "0.1.0"

from deepprl.envs import register_when_imported as _register_when_imported

_register_when_imported()
