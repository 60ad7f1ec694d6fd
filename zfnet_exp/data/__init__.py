"""Datamodules (generated ``shapes``, generic ``imagefolder``/ImageNet), paper transforms."""

from .datamodule import ImageFolderDataModule, ShapesDataModule
from .folder import IndexedImageFolder
from .shapes import SHAPE_CLASSES, ShapesSpec, generate_shapes, render

__all__ = [
    "ImageFolderDataModule",
    "IndexedImageFolder",
    "SHAPE_CLASSES",
    "ShapesDataModule",
    "ShapesSpec",
    "generate_shapes",
    "render",
]
