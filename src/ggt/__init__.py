"""ggt: Generative Ground Truth for image restoration.

Importing the package is cheap on purpose: heavy stacks (torch, spandrel, diffusers, pyiqa) are imported
inside the verbs that need them, so `ggt --help` and light verbs start fast.
"""

__version__ = "0.1.0"

CATEGORIES: tuple[str, ...] = ("social_media", "old_photo", "rain", "haze", "snow", "low_light")
"""The six real-degradation categories of GGT-100K."""
