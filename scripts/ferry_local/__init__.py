"""The local platform: the synthesized Ferry stack running on moto, with the real handlers.

- `template`: synthesize `Ferry-local` (cached) and resolve CloudFormation intrinsics.
- `resources`: create the template's buckets, tables, queues, topics and functions in moto.
- `moto_hooks`: every patch of a moto internal, installed and removed as a unit.
- `lambda_runtime`, `lambda_worker`: run each function in its own process, as Lambda does.
- `http_api`: serve the synthesized HTTP API routes on 127.0.0.1; `api_gate` checks each
  request first, as API Gateway does: `api_throttle` (the stage's token buckets), `api_iam`
  (SigV4 + IAM), `api_jwt` (JWT authorizers, the local issuer), `api_refusals` (their shape).
- `signing`: the SigV4 signing every caller of the HTTP API uses.
- `platform`: `LocalPlatform`, the context manager that puts it all together (`ferry local up`).
- `workflows`, `eventbridge`, `emf`, `alarms`, `pollers`: state machines, rules, alarms,
  metrics and SQS event source mappings.
- `moto_stack`: the template's resources in moto's in-process mock (tests, demo, benchmarks).
- `events`, `handlers`: AWS event shapes, and loading a handler module in this process.
"""
