"""Pretrained models built with TensorFlow/Keras, seeded: the test zoo (zoo.py), the digits CNN
that `invoke train` fine-tunes by default (digits.py) and MobileNetV2-w0.35 for the benchmark
(mobilenet_v2.py), cached under build/test_models; and the backbones pretrained on real data
that `invoke pretrain` writes to models/ (backbones.py)."""
