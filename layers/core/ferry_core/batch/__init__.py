"""Batch scoring (DESIGN.md §1 Batch scoring, §3.4 batch files).

A file dropped under `batch/incoming/{model}[@{version}]/…` is streamed in chunks, every row is
validated with the same verdict the real-time API would give it, accepted rows are scored in
vectorised onnxruntime calls, and three outputs are published in an order that never shows a
success manifest beside half a result: scored rows, rejected rows, then the manifest.

Modules: `keys` (where things live), `columns` (the columnar validator), `formats` (streaming
readers and writers for CSV, JSON Lines and Parquet), `s3io` (streaming S3 reads and atomic
multipart writes), `run` (one file, one part of a fanned-out file, and the merge).
"""
