"""Readers of the real dataset file formats. Every malformed input raises `DataError`."""
