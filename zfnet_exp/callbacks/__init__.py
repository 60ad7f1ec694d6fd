"""Lightning callbacks: thin, they decide when and what to run and hand results to the sink."""

from .dissect import Dissect
from .evolution import FeatureEvolution
from .filter_health import FilterHealth
from .filter_renorm import FilterRenormalization
from .grad_centralization import GradientCentralization
from .occlusion import OcclusionSensitivity
from .samples import TrainSamples
from .skipped_files import SkippedFilesMonitor
from .top9 import Top9Deconv

__all__ = [
    "Dissect",
    "OcclusionSensitivity",
    "FeatureEvolution",
    "FilterHealth",
    "Top9Deconv",
    "GradientCentralization",
    "FilterRenormalization",
    "TrainSamples",
    "SkippedFilesMonitor",
]
