"""VGG16 split in two: the frozen part (through block5_conv2) and the trainable tail.

The frozen part takes RGB images as float32 in [0, 255] (VGG16's own preprocessing is its first
layer) and returns block5_conv2's feature maps; those are what the feature cache stores. The tail
is block5_conv3, block5_pool and a small head that ends in one scalar: the predicted
log(likes / followers). Chained, they are the whole scorer, differentiable down to the pixels.

Training needs the frozen network only for images whose features are not cached yet.
`FrozenPart` is the frozen part as the trainer holds it: what identifies it (the fingerprint of
its values, and its `source`, what the values are made from, known without building anything)
at once, the network itself only when `forward` is first called, and `release` frees it again.
A `FrozenRecord` (kept by the feature cache) gives the fingerprint and block5_conv3's initial
weights of a source seen before, so a run whose features are all cached never builds VGG16.
"""

from __future__ import annotations

import gc
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import keras
import numpy as np
import tensorflow as tf
from keras.applications import vgg16

from instaflyd import allocator
from instaflyd.config import Config
from instaflyd.model.errors import ModelLoadError
from instaflyd.weights.file import weights_file

log = logging.getLogger("instafly.model.backbone")

BACKBONE = "vgg16"
LAST_FROZEN_LAYER = "block5_conv2"
TAIL_CONV = "block5_conv3"
FEATURE_CHANNELS = 512
FEATURE_STRIDE = 16  # four 2x2 poolings before block5
HEAD_UNITS = 16  # the 2017 project's Dense(16)


class VGG16Preprocess(keras.layers.Layer):
    """RGB in [0, 255] -> what VGG16 was trained on (BGR, ImageNet mean subtracted)."""

    def call(self, inputs):
        return vgg16.preprocess_input(inputs)


class FrozenIdentity(Protocol):
    """What names a frozen part for caches and model versions (a `Backbone` or a `FrozenPart`)."""

    @property
    def input_size(self) -> int: ...
    @property
    def weights(self) -> str: ...
    @property
    def fingerprint(self) -> str: ...


def feature_shape_at(input_size: int) -> tuple[int, int, int]:
    side = input_size // FEATURE_STRIDE
    return (side, side, FEATURE_CHANNELS)


@dataclass(frozen=True)
class Backbone:
    """The frozen part of VGG16 and what identifies it for caches and model versions."""

    frozen: keras.Model  # (N, S, S, 3) RGB 0..255 -> (N, S/16, S/16, 512)
    input_size: int
    weights: str  # imagenet | none | a path: the setting it was built from
    fingerprint: str  # sha1 of the frozen weights' values
    tail_conv_weights: list[np.ndarray]  # block5_conv3's initial kernel and bias
    forward: Callable[[np.ndarray], tf.Tensor]  # `frozen` as a compiled function of the pixels
    source: str = ""  # what the values were made from (`frozen_source`); "" if not asked for

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        return feature_shape_at(self.input_size)


def frozen_source(config: Config, weights: str, seed: int) -> str:
    """What the frozen part's values are made from, known without building it: the weights
    file's SHA-256, or for random weights the seed and the versions of the libraries that draw
    them. Two builds from the same source have the same fingerprint."""
    path = weights_file(config, weights)
    if path is None:
        return f"random seed {seed}, keras {keras.__version__}, tensorflow {tf.__version__}"
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return f"unreadable {path}"  # matches no record; building it then says what is wrong
    return f"file sha256 {digest.hexdigest()}"


@dataclass(frozen=True)
class FrozenRecord:
    """A frozen part seen before: its fingerprint and block5_conv3's initial weights."""

    source: str
    fingerprint: str
    tail_init: Path  # an .npz archive with `kernel` and `bias`

    def tail_conv_weights(self) -> list[np.ndarray]:
        with np.load(self.tail_init, allow_pickle=False) as saved:
            return [saved["kernel"], saved["bias"]]


class FrozenPart:
    """The frozen part as the trainer holds it: built only when features must be computed.

    `fingerprint` and `tail_conv_weights` come from the record it `recall`s (one of the same
    source), and from the built network otherwise; `forward` builds the network on first use;
    `release` frees it (the trainer calls it once the missing features are computed, before
    the tail trains). `builds` counts how often the network was built.
    """

    def __init__(
        self,
        config: Config,
        weights: str,
        input_size: int,
        seed: int | None = None,
    ) -> None:
        self._config = config
        self.weights = weights
        self.input_size = input_size
        self.seed = config.train.seed if seed is None else seed
        self.source = frozen_source(config, weights, self.seed)
        self.record: FrozenRecord | None = None
        self._backbone: Backbone | None = None
        self._tail_conv_weights: list[np.ndarray] | None = None
        self._fingerprint: str | None = None  # once built, kept after `release`
        self.builds = 0

    def recall(self, record: FrozenRecord | None) -> bool:
        """Take what `record` says about this frozen part if it is of the same source."""
        if record is None or record.source != self.source or self._backbone is not None:
            return False
        self.record = record
        return True

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        return feature_shape_at(self.input_size)

    @property
    def fingerprint(self) -> str:
        if self.record is not None:
            return self.record.fingerprint
        if self._fingerprint is None:
            self._fingerprint = self.backbone().fingerprint
        return self._fingerprint

    @property
    def tail_conv_weights(self) -> list[np.ndarray]:
        if self._tail_conv_weights is None:
            if self._backbone is None and self.record is not None:
                self._tail_conv_weights = self.record.tail_conv_weights()
            else:
                self._tail_conv_weights = self.backbone().tail_conv_weights
        return self._tail_conv_weights

    @property
    def built(self) -> bool:
        return self._backbone is not None

    def backbone(self) -> Backbone:
        """The network, built now if it is not (and checked against the record)."""
        if self._backbone is None:
            built = build_backbone(
                self._config, self.weights, self.input_size, self.seed, source=self.source
            )
            self.builds += 1
            if self.record is not None and built.fingerprint != self.record.fingerprint:
                raise ModelLoadError(
                    f"the frozen part built from {self.source} has fingerprint "
                    f"{built.fingerprint[:12]}, not the {self.record.fingerprint[:12]} its "
                    "feature cache recorded; the cached features are computed again next run"
                )
            self._backbone, self._fingerprint = built, built.fingerprint
        return self._backbone

    def forward(self, pixels: np.ndarray) -> tf.Tensor:
        return self.backbone().forward(pixels)

    def release(self) -> None:
        """Free the network (its weights and compiled forward pass); built again if needed."""
        if self._backbone is not None:
            if self._tail_conv_weights is None:
                self._tail_conv_weights = self._backbone.tail_conv_weights
            self._backbone = None
            gc.collect()
            allocator.give_back()


def build_backbone(
    config: Config,
    weights: str,
    input_size: int,
    seed: int | None = None,
    *,
    source: str | None = None,
) -> Backbone:
    """VGG16 with the given weights setting, cut after block5_conv2.

    Random initialisation is seeded (`seed`, by default `train.seed`), so every process builds
    the same frozen part; the fingerprint proves it (cached features and saved tails are only
    valid with it). `source` is `frozen_source`'s answer when the caller has it, "" when it
    does not need it (hashing the ImageNet file would slow an enhancer's start); by default it
    is worked out.
    """
    if weights == "none":
        keras.utils.set_random_seed(config.train.seed if seed is None else seed)
    path = weights_file(config, weights)
    vgg = vgg16.VGG16(
        include_top=False, weights=None if path is None else str(path), input_shape=(None, None, 3)
    )
    inputs = keras.Input((None, None, 3), name="rgb")
    x = VGG16Preprocess(name="vgg16_preprocess")(inputs)
    for layer in vgg.layers[1:]:
        x = layer(x)
        if layer.name == LAST_FROZEN_LAYER:
            break
    frozen = keras.Model(inputs, x, name="vgg16_frozen")
    frozen.trainable = False
    seed_used = config.train.seed if seed is None else seed
    forward = tf.function(
        lambda pixels: frozen(pixels, training=False),
        input_signature=[tf.TensorSpec((None, None, None, 3), tf.float32)],
    )
    return Backbone(
        frozen=frozen,
        input_size=input_size,
        weights=weights,
        fingerprint=_fingerprint(frozen),
        tail_conv_weights=[w.copy() for w in vgg.get_layer(TAIL_CONV).get_weights()],
        forward=forward,
        source=frozen_source(config, weights, seed_used) if source is None else source,
    )


def build_tail(
    seed: int | None = None, conv_weights: list[np.ndarray] | None = None
) -> keras.Model:
    """block5_conv3 + block5_pool + GlobalAveragePooling + Dense(16) + Dense(1).

    `seed` makes the head's initialisation reproducible; `conv_weights` start block5_conv3 from
    VGG16's own.
    """
    if seed is not None:
        keras.utils.set_random_seed(seed)
    features = keras.Input((None, None, FEATURE_CHANNELS), name="block5_conv2_features")
    conv = keras.layers.Conv2D(
        FEATURE_CHANNELS, 3, padding="same", activation="relu", name=TAIL_CONV
    )
    x = conv(features)
    x = keras.layers.MaxPooling2D(2, name="block5_pool")(x)
    x = keras.layers.GlobalAveragePooling2D(name="average")(x)
    x = keras.layers.Dense(HEAD_UNITS, activation="relu", name="head")(x)
    score = keras.layers.Dense(1, name="score")(x)
    tail = keras.Model(features, score, name="insta_bae_tail")
    if conv_weights is not None:
        conv.set_weights(conv_weights)
    return tail


def build_scorer_model(backbone: Backbone, tail: keras.Model) -> keras.Model:
    """Pixels -> score: the frozen part and the tail chained, one scalar per image."""
    inputs = keras.Input((None, None, 3), name="rgb")
    score = tail(backbone.frozen(inputs))
    return keras.Model(inputs, keras.ops.squeeze(score, axis=-1), name="insta_bae")


def load_tail(path: Path) -> keras.Model:
    tail = build_tail()
    tail.load_weights(path)
    return tail


def _fingerprint(model: keras.Model) -> str:
    digest = hashlib.sha1(usedforsecurity=False)
    for weight in model.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
    return digest.hexdigest()
