"""Quantizers: turn a state dict into integer tensors + scales + metadata, and back.

Every quantizer writes the same self-describing form (``golf.quant.format``), so an artifact is
dequantized from its own metadata, without the config that made it.
"""
