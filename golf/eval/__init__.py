"""Evaluation: validation loss and the challenge's tokenizer-agnostic bits per byte."""
