"""Moved to the package ric/image/ (one file per part; see its docstring). These names stay
importable from here for code not yet switched over (train/report.py, tests/test_app.py,
tests/test_train_scripts.py)."""

from ric.image.evaluation import ImageEvalConfig, evaluate_image_front  # noqa: F401
from ric.image.recipe import ImageRecipe  # noqa: F401
from ric.image.sampling import SteerableImageModel, enlarge, time_generation  # noqa: F401
from ric.image.training import train_image_model  # noqa: F401
