"""Robust image loading shared by every datamodule: one unreadable file never costs a run.

* :func:`read_rgb` opens any image PIL can decode (greyscale, CMYK, palette, RGBA) as RGB and turns every decode
  failure (truncated JPEG, a text file named ``.JPEG``, an empty file) into :class:`UnreadableImage`, naming the
  file.
* :class:`SkippingDataset` is the item logic of every dataset here (``IndexedImageFolder`` for class-folder
  layouts, :class:`SampleList` for explicit ``(path, target)`` lists such as ImageNet's flat validation folder,
  Caltech splits or PASCAL VOC): an unreadable file is replaced by the next readable sample, so a batch stays
  full, the file is reported once (a warning naming it) and recorded in a :class:`SkipLog`; ``strict=True`` makes
  it a :class:`~zfnet_exp.errors.DataError` naming the file instead.
* :class:`SkipLog` is how the count leaves DataLoader worker processes: workers are separate processes (forked or
  spawned), so an in-memory counter in the dataset would stay in the worker. Each process appends the paths it
  skipped to its own small file in one folder; the main process reads the union (distinct files), which is
  exact across workers, persistent or not, and across epochs.
* A few bad files are skipped; a mostly unreadable split is not a dataset to train on (a copy cut short, a
  wrong extraction): once more than ``max(max_files, max_fraction x split size)`` distinct files of one split
  are unreadable (``data.max_skipped_files``, ``data.max_skipped_fraction``), :class:`TooManyUnreadable` stops
  the run in one paragraph naming the count, the split and the file that lists them. Below that, the first
  :data:`SAY_FIRST` files of a split get a warning each and the rest one summary line, not one line per file.
* :func:`check_split_folder` / :func:`layout_error` give the layout errors with the expected tree and the config
  key to set, raised at start, before a model is built.

Items are ``(image, target, dataset index)``; the index is the one of the sample actually returned, so
diagnostics that look an image up by index (top-9 mining) find the image they were given.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

from ..errors import DataError

IMAGEFOLDER_TREE = """\
<data.root>/
├── train/
│   ├── <class A>/   a1.jpg  a2.jpg ...
│   └── <class B>/   b1.jpg ...
└── val/
    ├── <class A>/   ...
    └── <class B>/   ...      (the same class sub-folders in both splits)"""


class UnreadableImage(DataError):
    """An image file that cannot be decoded (corrupt, truncated, or not an image)."""

    def __init__(self, path: str, reason: str | None = None):
        if reason is None:  # re-raised from a DataLoader worker with the worker's traceback as the one argument:
            message = str(path).strip().splitlines()[-1]  # keep only its last line, our own message
            super().__init__(message.split("UnreadableImage: ", 1)[-1])
            self.path = self.reason = None
            return
        self.path, self.reason = str(path), reason
        super().__init__(
            f"Cannot read image {path}: {reason}. The file is corrupt or not an image; delete or replace it, or "
            f"set data.strict=false to skip unreadable files (they are counted in data/skipped_files)."
        )


MAX_SKIPPED_FRACTION = 0.01  # of a split: more unreadable files than this stop the run (data.max_skipped_fraction)
MAX_SKIPPED_FILES = 10  # ... unless there are at most this many (tiny splits; data.max_skipped_files)
SAY_FIRST = 5  # unreadable files of a split that get a warning line each; the rest: one summary line


def _own_line(message: str, name: str) -> str:
    """The message of an exception re-raised from a DataLoader worker, whose one argument is the worker's
    traceback: keep its last line, our own message."""
    last = str(message).strip().splitlines()[-1] if str(message).strip() else ""
    return last.split(f"{name}: ", 1)[-1] if "Original Traceback" in str(message) else str(message)


class TooManyUnreadable(DataError):
    """More unreadable files in one split than ``data.max_skipped_*`` allow (raised in whichever process met
    the one file too many; one line, so that a DataLoader worker's re-raise keeps it whole)."""

    def __init__(self, message: str):
        super().__init__(_own_line(message, type(self).__name__))


class SkippedImageWarning(UserWarning):
    """One per unreadable file (per process): the file was skipped and replaced in its batch."""


def read_rgb(path: str | Path, draft_size: int | None = None) -> Image.Image:
    """The image at ``path`` as a fully decoded RGB PIL image; :class:`UnreadableImage` if it cannot be read.

    With ``draft_size``, libjpeg-turbo decodes a JPEG at a reduced DCT scale (1/2, 1/4, 1/8) whose shorter side
    is still >= ``draft_size``: a large photo that is resized to 256 anyway decodes 2-4x faster."""
    try:
        with open(path, "rb") as f:
            img = Image.open(f)
            if draft_size and img.format == "JPEG":
                w, h = img.size
                scale = draft_size / min(w, h)
                img.draft("RGB", (max(1, round(w * scale)), max(1, round(h * scale))))
            img.load()  # the full decode: a truncated file fails here
            return img if img.mode == "RGB" else img.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        # UnidentifiedImageError and "image file is truncated" are OSErrors; a missing file too
        raise UnreadableImage(str(path), f"{type(e).__name__}: {e}") from None


class SkipLog:
    """The set of files skipped so far, shared by the main process and its DataLoader workers through a
    folder: each process appends to ``skipped-<pid>.tsv`` (``path<TAB>reason<TAB>split`` lines). ``directory=None``
    makes a private temporary folder, removed when the creating process exits. ``max_fraction`` /
    ``max_files``: the limit per split (see the module docstring); ``report``: where the full list is written
    when the limit stops the run (the run folder's ``skipped_files.txt``; the train task sets it)."""

    def __init__(
        self,
        directory: str | Path | None = None,
        max_fraction: float = MAX_SKIPPED_FRACTION,
        max_files: int = MAX_SKIPPED_FILES,
        report: str | Path | None = None,
    ):
        self.max_fraction, self.max_files = float(max_fraction), int(max_files)
        self.report = report
        if directory is None:
            directory = tempfile.mkdtemp(prefix="zfnet-skipped-")
            creator = os.getpid()
            atexit.register(lambda: os.getpid() == creator and shutil.rmtree(directory, ignore_errors=True))
        self.directory = str(directory)
        Path(self.directory).mkdir(parents=True, exist_ok=True)

    def _lines(self) -> dict[str, tuple[str, str]]:
        """``{path: (reason, split)}`` of every distinct skipped file."""
        out: dict[str, tuple[str, str]] = {}
        for f in sorted(Path(self.directory).glob("skipped-*.tsv")):
            for line in f.read_text().splitlines():
                path, _, rest = line.partition("\t")
                reason, _, split = rest.partition("\t")
                out.setdefault(path, (reason, split or "data"))
        return out

    def entries(self) -> dict[str, str]:
        """``{path: reason}`` of every distinct skipped file."""
        return {path: reason for path, (reason, _) in self._lines().items()}

    def __len__(self) -> int:
        return len(self.entries())

    def limit(self, size: int) -> int:
        """Unreadable files a split of ``size`` files may have before the run stops."""
        return max(self.max_files, int(self.max_fraction * size))

    def record(self, path: str, reason: str, split: str = "data", size: int | None = None) -> int:
        """Add ``path`` (of ``split``, which has ``size`` files); 0 if it was known already, else the number of
        distinct unreadable files of that split so far (the caller warns for the first few). Past the limit
        (``size`` given): the list is written to :attr:`report` and :class:`TooManyUnreadable` raised."""
        lines = self._lines()
        if path in lines:
            return 0
        with open(Path(self.directory) / f"skipped-{os.getpid()}.tsv", "a") as f:
            f.write(f"{path}\t{reason.replace(chr(10), ' ').replace(chr(9), ' ')}\t{split}\n")
        lines[path] = (reason, split)
        count = sum(1 for _, s in lines.values() if s == split)
        if size is not None and count > self.limit(size):
            raise TooManyUnreadable(self._too_many(count, split, size, lines))
        return count

    def warn(self, count: int, split: str, line: str, say: Callable[[str], None]) -> None:
        """``say(line)`` for the first :data:`SAY_FIRST` files of a split, then one summary line for the rest
        (``count``: what :meth:`record` returned; 0, a file met before, says nothing)."""
        if 0 < count <= SAY_FIRST:
            say(line)
        elif count == SAY_FIRST + 1:
            where = f" and listed in {self.report}" if self.report else ""
            say(
                f"More unreadable images in the {split} split: from now on they are skipped without a line each "
                f"(counted in data/skipped_files{where}; the run stops past {self.max_fraction:g} of the split or "
                f"{self.max_files} files, data.max_skipped_fraction / data.max_skipped_files)."
            )

    def _too_many(self, count: int, split: str, size: int, lines: dict[str, tuple[str, str]]) -> str:
        listed = "(set no report file)"
        if self.report is not None:
            try:
                Path(self.report).write_text("".join(f"{p}\t{r}\n" for p, (r, _) in sorted(lines.items())))
                listed = f"listed in {self.report}"
            except OSError as e:
                listed = f"not listed: {self.report} could not be written ({e.strerror})"
        first = sorted(p for p, (_, s) in lines.items() if s == split)[0]
        return (
            f"Too many unreadable images: {count} of the {size} files of the {split} split met so far cannot be "
            f"read (e.g. {first}), more than the {self.limit(size)} allowed (data.max_skipped_fraction="
            f"{self.max_fraction:g} of {size}, at least data.max_skipped_files={self.max_files}); they are "
            f"{listed}. A split this unreadable is a broken copy, not a few bad files: re-copy or re-extract the "
            f"dataset, or raise data.max_skipped_fraction to train on the readable rest."
        )


class SkippingDataset(Dataset):
    """Item logic shared by the datasets: ``samples`` is a list of ``(path, target)``; ``transform`` maps the
    RGB PIL image, ``target_transform`` the target. Subclasses only build ``samples``.

    ``classes`` are the identifiers the labels index (folder names, WordNet ids); ``class_names`` the
    human-readable names shown in figures and tables (index-aligned; default: ``classes``).
    """

    samples: list[tuple[str, Any]]
    classes: list[str]
    transform: Callable | None = None
    target_transform: Callable | None = None
    strict: bool = False
    skip_log: SkipLog | None = None
    split: str = "data"  # named in the skip log and its messages; the datamodule sets train / val
    draft_size: int | None = None  # JPEG DCT downscaling target (see read_rgb); the datamodule sets it
    _class_names: list[str] | None = None

    def _init_robust(
        self, strict: bool, skip_log: SkipLog | None, class_names: Sequence[str] | None, draft_size: int | None
    ) -> None:
        self.strict = bool(strict)
        self.draft_size = draft_size
        self.skip_log = skip_log if skip_log is not None else SkipLog()
        self._class_names = list(class_names) if class_names is not None else None

    @property
    def class_names(self) -> list[str]:
        return list(self._class_names) if self._class_names is not None else list(self.classes)

    @class_names.setter
    def class_names(self, names: Sequence[str]) -> None:
        if len(names) != len(self.classes):
            raise ValueError(f"{len(names)} class names for {len(self.classes)} classes")
        self._class_names = list(names)

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> tuple[Image.Image, Any, int]:
        """The RGB image and target of ``index`` or, if that file is unreadable, of the next readable sample
        (wrapping around), with the index actually used."""
        n = len(self.samples)
        for k in range(n):
            j = (index + k) % n
            path, target = self.samples[j]
            try:
                return read_rgb(path, self.draft_size), target, j
            except UnreadableImage as e:
                if self.strict:
                    raise
                count = self.skip_log.record(e.path, e.reason, self.split, n)
                self.skip_log.warn(
                    count,
                    self.split,
                    f"Skipping unreadable image {e.path} ({e.reason}); its place in the batch goes to the next "
                    f"readable image. Counted in data/skipped_files; data.strict=true makes this an error.",
                    lambda line: warnings.warn(line, SkippedImageWarning, stacklevel=4),
                )
        raise DataError(f"None of the {n} images of this dataset can be read (e.g. {self.samples[index][0]}).")

    def __getitem__(self, index: int) -> tuple[Any, Any, int]:
        image, target, j = self.load(index)
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target, j

    @property
    def skipped(self) -> dict[str, str]:
        return self.skip_log.entries()


class IndexedImageFolder(SkippingDataset, ImageFolder):
    """``ImageFolder`` (``root/<class>/<image>``) with skipping items ``(image, label, index)``: diagnostics
    need to know which image a batch element is (top-9 mining, probe images) even when a DistributedSampler
    shuffles the shards. ``class_to_idx`` fixes the label of each folder name (e.g. a validation split labelled
    like its training split)."""

    def __init__(
        self,
        root: str | Path,
        transform: Callable | None = None,
        *,
        class_to_idx: dict[str, int] | None = None,
        class_names: Sequence[str] | None = None,
        strict: bool = False,
        skip_log: SkipLog | None = None,
        draft_size: int | None = None,
        config_key: str = "data.root",
        tree: str = IMAGEFOLDER_TREE,
    ):
        check_split_folder(Path(root), tree, config_key)
        self._fixed_class_to_idx, self._tree = class_to_idx, tree
        self.split = Path(root).name
        try:  # with a fixed mapping (a validation split labelled like training) a class may lack images
            ImageFolder.__init__(self, str(root), transform=transform, allow_empty=class_to_idx is not None)
        except FileNotFoundError as e:  # a class folder without images
            raise layout_error(f"{root}: {e}", tree, config_key) from None
        self._init_robust(strict, skip_log, class_names, draft_size)

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        if self._fixed_class_to_idx is None:
            return super().find_classes(directory)
        found = {p.name for p in Path(directory).iterdir() if p.is_dir()}
        unknown = sorted(found - set(self._fixed_class_to_idx))
        if unknown:
            raise layout_error(
                f"{directory} has class folders that the training split does not have (e.g. {unknown[:5]}); both "
                f"splits need the same class sub-folders.",
                self._tree,
            )
        mapping = dict(self._fixed_class_to_idx)
        return sorted(mapping, key=mapping.__getitem__), mapping

    def annotation(self, index: int) -> dict | None:
        """The JSON sidecar of an image (the shapes dataset writes one), or None."""
        import json

        sidecar = Path(self.samples[index][0]).with_suffix(".json")
        return json.loads(sidecar.read_text()) if sidecar.is_file() else None


class SampleList(SkippingDataset):
    """A dataset over an explicit list of ``(path, target)`` pairs (targets: class indices, or anything a
    ``target_transform`` turns into a tensor, e.g. VOC's multi-label vectors), with skipping items."""

    def __init__(
        self,
        samples: Sequence[tuple[str | Path, Any]],
        classes: Sequence[str],
        transform: Callable | None = None,
        *,
        target_transform: Callable | None = None,
        class_names: Sequence[str] | None = None,
        strict: bool = False,
        skip_log: SkipLog | None = None,
        draft_size: int | None = None,
        root: str | Path | None = None,
    ):
        self.samples = [(str(p), t) for p, t in samples]
        self.targets = [t for _, t in self.samples]
        self.classes = list(classes)
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.transform, self.target_transform = transform, target_transform
        self.root = str(root) if root is not None else None
        self._init_robust(strict, skip_log, class_names, draft_size)


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMG_EXTENSIONS


def layout_error(problem: str, tree: str = IMAGEFOLDER_TREE, key: str = "data.root") -> DataError:
    """A layout error: the problem, the config key to set, and the expected tree."""
    return DataError(f"{problem} Fix the files, or set {key}=<path> to match this expected layout:\n{tree}")


def check_split_folder(split_dir: Path, tree: str = IMAGEFOLDER_TREE, config_key: str = "data.root") -> None:
    """Raise a :func:`layout_error` unless ``split_dir`` is a folder of class sub-folders holding images."""
    split_dir = Path(split_dir)
    root = split_dir.parent
    if not root.exists():
        raise layout_error(f"Dataset folder {root} does not exist.", tree, config_key)
    if not split_dir.is_dir():
        found = sorted(p.name for p in root.iterdir())[:8]
        raise layout_error(
            f"Dataset folder {root} has no '{split_dir.name}' sub-folder (found: {found or 'nothing'}).",
            tree,
            config_key,
        )
    classes = [p for p in split_dir.iterdir() if p.is_dir()]
    if not classes:
        raise layout_error(f"{split_dir} has no class sub-folders.", tree, config_key)
    if not any(is_image_file(f) for c in classes for f in c.iterdir()):
        raise layout_error(
            f"{split_dir} has class folders but no images ({', '.join(IMG_EXTENSIONS)}).", tree, config_key
        )
