"""Batch scoring (DESIGN.md §1 Batch scoring, §3.4 batch files).

A file dropped under `batch/incoming/{model}[@{version}]/…` is streamed in chunks, every row is
validated with the same verdict the real-time API would give it, accepted rows are scored in
vectorised onnxruntime calls, and three outputs are published in an order that never shows a
success manifest beside half a result: scored rows, rejected rows, then the manifest.

Modules: `keys` (where things live), `settings` (the function's environment and the sizes it
implies), `columns` (the columnar validator), `formats` (streaming readers and writers for CSV,
JSON Lines and Parquet), `s3io` (streaming S3 reads and atomic multipart writes), `chunks` (the
chunk loop: read, validate, score, write), `outputs` (results and manifests, in publication
order), `accounting` (row counts, the audit entry, metrics), `fanout` (parts of a large file and
their merge; the state machine that runs them), `run` (`BatchRunner`: one file, one part of a
fanned-out file, the merge).
"""
