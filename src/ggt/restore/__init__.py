"""Restoration models: IR training, evaluation and inference (spandrel architectures); generative fine-tuning."""
