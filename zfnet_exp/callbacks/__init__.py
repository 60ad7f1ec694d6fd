"""Lightning callbacks: thin, they decide when and what to run and hand results to the sink."""

from .filter_renorm import FilterRenormalization
from .grad_centralization import GradientCentralization
from .samples import TrainSamples

__all__ = ["GradientCentralization", "FilterRenormalization", "TrainSamples"]
