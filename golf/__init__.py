"""golf: a Hydra-configured framework for Parameter Golf research.

Every technique of the challenge's record scripts is a composable config option; one run trains,
quantizes, compresses, reloads and scores a model (see ``golf.pipeline``).
"""

__version__ = "0.1.0"
