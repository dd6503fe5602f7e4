"""Compression: byte codecs and golf's pickle-free artifact file."""
