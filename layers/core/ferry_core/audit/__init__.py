"""The audit trail: an append-only, hash-chained log per model, anchored outside DynamoDB.

- `table`    the typed entry, how it is hashed and stored, and the audit table's reads
- `chain`    appending to and verifying a model's chain
- `anchors`  head hashes in the Object Lock bucket
"""
