"""VGG16 split in two: the frozen part (through block5_conv2) and the trainable tail.

The frozen part takes RGB images as float32 in [0, 255] (VGG16's own preprocessing is its first
layer) and returns block5_conv2's feature maps; those are what the feature cache stores. The tail
is block5_conv3, block5_pool and a small head that ends in one scalar: the predicted
log(likes / followers). Chained, they are the whole scorer, differentiable down to the pixels.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras.applications import vgg16

from instaflyd.config import Config
from instaflyd.weights.file import weights_file

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


@dataclass(frozen=True)
class Backbone:
    """The frozen part of VGG16 and what identifies it for caches and model versions."""

    frozen: keras.Model  # (N, S, S, 3) RGB 0..255 -> (N, S/16, S/16, 512)
    input_size: int
    weights: str  # imagenet | none | a path: the setting it was built from
    fingerprint: str  # sha1 of the frozen weights' values
    tail_conv_weights: list[np.ndarray]  # block5_conv3's initial kernel and bias
    forward: Callable[[np.ndarray], tf.Tensor]  # `frozen` as a compiled function of the pixels

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        side = self.input_size // FEATURE_STRIDE
        return (side, side, FEATURE_CHANNELS)


def build_backbone(
    config: Config, weights: str, input_size: int, seed: int | None = None
) -> Backbone:
    """VGG16 with the given weights setting, cut after block5_conv2.

    Random initialisation is seeded (`seed`, by default `train.seed`), so every process builds
    the same frozen part; the fingerprint proves it (cached features and saved tails are only
    valid with it).
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
