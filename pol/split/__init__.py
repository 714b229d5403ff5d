"""Split learning across untrusted nodes (docs/SPLIT.md)."""
