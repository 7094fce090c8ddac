"""HTTP service: top-K with per-user objective weights, updated in real time by feedback.

`deepprl serve --run DIR` (see docs/serving.md). Nothing here imports training code: a
served run is loaded with deepprl.artifacts.load_serving_run (safetensors + JSON, no pickle,
no training log).
"""

from deepprl.serve.app import create_app
from deepprl.serve.service import FieldError, Service
from deepprl.serve.settings import ServeSettings
from deepprl.serve.store import FeedbackStore, StoreError

__all__ = ["FeedbackStore", "FieldError", "ServeSettings", "Service", "StoreError",
           "create_app"]
