"""nextpatch: find defects on industrial parts having seen only good ones.

    from nextpatch import Detector
    detector = Detector().fit("good_images/")
    prediction = detector.predict("part.png")
"""
__version__ = "0.1.0"

from .config import Config, ModelConfig, TrainConfig  # noqa: E402
from .detector import Detector, Prediction  # noqa: E402
from .presets import PRESETS, preset_config  # noqa: E402

__all__ = ["Config", "Detector", "ModelConfig", "PRESETS", "Prediction", "TrainConfig", "__version__", "preset_config"]
