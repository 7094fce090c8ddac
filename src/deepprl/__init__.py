"""deepprl: Deep Pareto Reinforcement Learning for multi-objective recommender systems."""

__version__ = "0.1.0"
