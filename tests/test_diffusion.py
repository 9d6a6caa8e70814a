"""The image tests moved to tests/test_image_*.py, one per module of ric/image/; tiny_recipe
lives in tests/image_helpers.py and is re-exported here for tests/test_app.py."""

from image_helpers import tiny_recipe  # noqa: F401
