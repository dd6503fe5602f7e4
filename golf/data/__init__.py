"""Data: the challenge's shard format, training/validation loaders, tokenizers and data sources."""
