"""Models: import (.tflite -> graph IR), lowering to kernel parameters, memory planning."""
