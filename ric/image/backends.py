"""BACKENDS: a recipe's `kind` (and a model's ric.json "backend") -> its backend class.

Each backend class has ``train(recipe, callback) -> model folder`` and, built from a trained
folder as ``Backend(folder, meta, device, base)``, ``images(captions, desired, seed, guidance,
steps, progress, batch_size) -> list of HxWx3 uint8 arrays``.
"""

from ric.image.embedded import EmbeddedBackend
from ric.image.sd import SDBackend

BACKENDS = {"embedded": EmbeddedBackend, "sd": SDBackend}
