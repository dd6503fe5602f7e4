"""Calibration for Hessian-based quantization: where the tokens come from (``sources``), the KV-cached
self-generation (``generate``), and the Hessians of every block matrix's input (``hessians``)."""
