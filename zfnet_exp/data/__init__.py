"""Datamodules (generated ``shapes``, generic ``imagefolder``/ImageNet), paper transforms, errors."""

from .datamodule import ImageFolderDataModule, ShapesDataModule
from .errors import DataError, UserError
from .folder import IndexedImageFolder
from .shapes import SHAPE_CLASSES, ShapesSpec, generate_shapes, render

__all__ = [
    "DataError",
    "ImageFolderDataModule",
    "IndexedImageFolder",
    "SHAPE_CLASSES",
    "ShapesDataModule",
    "ShapesSpec",
    "UserError",
    "generate_shapes",
    "render",
]
