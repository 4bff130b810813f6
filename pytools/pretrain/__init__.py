"""Pretrained models built with TensorFlow/Keras, seeded and cached under build/test_models:
the test zoo (zoo.py), the digits CNN that `invoke train` fine-tunes by default (digits.py),
and MobileNetV2-w0.35 for the benchmark (mobilenet_v2.py)."""
