"""Concept masks of the shapes data (zfnet_exp.data.concepts): replayed from the generator without changing a
single generated pixel, class-independent where they should be, and geometrically what their names say."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from zfnet_exp.data.concepts import (
    COLOUR_TERMS,
    SHAPES_CONCEPTS,
    ShapesConcepts,
    concept_masks_from_trace,
    label_maps,
    name_colours,
    shapes_concept_masks,
)
from zfnet_exp.data.shapes import SHAPE_CLASSES, ShapesSpec, generate_shapes, image_seed, render
from zfnet_exp.errors import DataError

SPEC = ShapesSpec(image_size=73, train_per_class=2, val_per_class=1, safe_size=64)
# sha256 over (image bytes, mask bytes, annotation JSON) of 40 renders (train and val indices 0-19) at the
# default drawing (73 px, safe 64), computed with the generator *before* concept tracing was added to it
PINNED = "ff7f05ee5cd0824879410ec2e9ceee9b9f007b01a3e685559dac2d155c776afc"


@pytest.mark.parametrize("traced", [False, True])
def test_images_are_bit_identical_to_the_generator_before_concepts(traced):
    spec = ShapesSpec(image_size=73, safe_size=64)
    h = hashlib.sha256()
    for split in ("train", "val"):
        for index in range(20):
            rng = np.random.default_rng(image_seed(spec.seed, split, index))
            img, mask, ann = render(spec, index % 10, rng, {} if traced else None)
            h.update(np.asarray(img).tobytes())
            h.update(np.asarray(mask).tobytes())
            h.update(json.dumps(ann).encode())
    assert h.hexdigest() == PINNED


def test_replay_reproduces_the_stored_files_and_their_object_masks(tmp_path):
    root = generate_shapes(tmp_path, SPEC, workers=1, progress=False)
    names = SHAPES_CONCEPTS.names
    for path in sorted((root / "val").glob("*/*.png")):
        label, index = SHAPE_CLASSES.index(path.parent.name), int(path.stem)
        trace: dict = {}
        image, _, _ = render(SPEC, label, np.random.default_rng(image_seed(SPEC.seed, "val", index)), trace)
        assert np.array_equal(np.asarray(image), np.asarray(Image.open(path)))
        masks = shapes_concept_masks(SPEC, "val", index, label)
        saved = np.asarray(Image.open(root / "masks" / "val" / path.parent.name / path.name)) > 127
        assert np.array_equal(masks[names.index(path.parent.name)], saved)


def test_non_object_concepts_do_not_depend_on_the_class():
    """One seed drawn as every class: texture, object colour, background and clutter are the same draws."""
    spec = ShapesSpec(image_size=73, safe_size=64)
    for index in range(5):
        traces = []
        for label in range(len(SHAPE_CLASSES)):
            t: dict = {}
            render(spec, label, np.random.default_rng(image_seed(0, "train", index)), t)
            traces.append(t)
        for t in traces[1:]:
            assert t["texture"] == traces[0]["texture"]
            assert np.array_equal(t["object_colour"], traces[0]["object_colour"])
            assert np.array_equal(t["gradient"], traces[0]["gradient"])
            assert np.array_equal(t["clutter"], traces[0]["clutter"])


def test_masks_mean_what_their_names_say():
    spec = ShapesSpec(image_size=73, safe_size=64)
    names, cats = SHAPES_CONCEPTS.names, SHAPES_CONCEPTS.categories
    seen_textures = set()
    for index in range(20):
        label = index % len(SHAPE_CLASSES)
        trace: dict = {}
        _, mask, ann = render(spec, label, np.random.default_rng(image_seed(0, "val", index)), trace)
        m = concept_masks_from_trace(spec, ann, trace)
        obj = np.asarray(mask) > 127
        cls = SHAPE_CLASSES[label]
        # exactly one object concept, the class's, equal to the saved mask
        objects = [n for n, c in zip(names, cats) if c == "object"]
        assert [n for n in objects if m[names.index(n)].any()] == [cls]
        assert np.array_equal(m[names.index(cls)], obj)
        # parts: only the class's own, inside the object, and each contains its keypoint's nearest pixel
        for n, c in zip(names, cats):
            if c == "part":
                assert not m[names.index(n)].any() or n.startswith(cls + " ")
                assert not (m[names.index(n)] & ~obj).any()
        for kp, (x, y) in ann["keypoints"].items():
            xi, yi = int(round(x)), int(round(y))
            part = f"{cls} {kp.split('_')[0].rstrip('0123456789')}"
            if part in names and obj[yi, xi]:
                assert m[names.index(part), yi, xi]
        # outline: a band around the boundary, every boundary pixel (object pixel with a background neighbour)
        boundary = obj & ~ndimage.binary_erosion(obj, border_value=0)
        band = m[names.index("outline")]
        assert band[boundary].all() and band.mean() < 0.5 * obj.mean() + 0.1
        # texture: exactly one kind, on the object
        tex = [n for n, c in zip(names, cats) if c == "texture" and m[names.index(n)].any()]
        assert tex == [trace["texture"]] and np.array_equal(m[names.index(tex[0])], obj)
        seen_textures.add(tex[0])
        # colours partition the image; the object's base colour names all of the object
        colours = np.stack([m[names.index(t)] for t in COLOUR_TERMS])
        assert (colours.sum(0) == 1).all()
        base = list(COLOUR_TERMS)[int(name_colours(trace["object_colour"][None, None])[0, 0])]
        assert m[names.index(base)][obj].all()
        # clutter lies outside the object
        for n in ("clutter stroke", "clutter blob"):
            assert not (m[names.index(n)] & obj).any()
    assert len(seen_textures) >= 3


def test_label_maps_keep_every_concept_of_every_pixel():
    spec = ShapesSpec(image_size=73, safe_size=64)
    for index in range(10):
        masks = torch.from_numpy(shapes_concept_masks(spec, "train", index, index % 10))
        maps = label_maps(masks)
        back = torch.zeros_like(masks)
        for m in maps:  # each label map: value k + 1 where concept k
            y, x = (m > 0).nonzero(as_tuple=True)
            back[m[y, x].long() - 1, y, x] = True
        assert torch.equal(back, masks)


def test_dataset_items_at_the_network_crop_and_mask_size(tmp_path):
    root = generate_shapes(tmp_path, SPEC, workers=1, progress=False)
    ds = ShapesConcepts.from_folder(root, "train", crop_size=64, mask_size=32)
    image, masks, i = ds[3]
    assert masks.shape == (len(SHAPES_CONCEPTS), 32, 32) and masks.dtype == torch.bool and i == 3
    assert image.size == (73, 73)
    with pytest.raises(DataError, match="meta.json"):
        ShapesConcepts.from_folder(tmp_path, "train", crop_size=64)
