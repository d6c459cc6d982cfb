"""The local platform: the synthesized Ferry stack running on moto, with the real handlers.

- `template`: synthesize `Ferry-local` (cached) and resolve CloudFormation intrinsics.
- `resources`: create the template's buckets, tables, queues, topics and functions in moto.
- `lambda_runtime`: run Lambda invocations in this process (the moto hook).
- `http_api`: serve the synthesized HTTP API routes on 127.0.0.1.
- `platform`: `LocalPlatform`, the context manager that puts it all together (`ferry local up`).
- `workflows`, `emf`, `alarms`: state machines, rules, alarms and metrics.
"""
