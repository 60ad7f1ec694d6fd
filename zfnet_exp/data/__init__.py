"""Datamodules (generated ``shapes``, generic ``imagefolder``, ``imagenet``), robust loading, paper transforms."""

from .datamodule import ImageFolderDataModule, ShapesDataModule
from .folder import IndexedImageFolder, SampleList, SkipLog, read_rgb
from .imagenet import ImageNetDataModule
from .shapes import SHAPE_CLASSES, ShapesSpec, generate_shapes, render

__all__ = [
    "ImageFolderDataModule",
    "ImageNetDataModule",
    "IndexedImageFolder",
    "SampleList",
    "SkipLog",
    "SHAPE_CLASSES",
    "ShapesDataModule",
    "ShapesSpec",
    "generate_shapes",
    "read_rgb",
    "render",
]
