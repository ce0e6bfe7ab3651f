"""The insta-bae model: VGG16 backbone + a small head, labels, feature cache, training, registry."""
