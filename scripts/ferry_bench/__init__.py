"""Benchmarks and reliability properties of Ferry, loaded only by `ferry bench …` and the tests.

Benchmarks (`scoring_latency`, `batch_throughput`, `http_load`) print their figures and say
whether their targets held. Each property module (`bad_input`, `rows_accounted`,
`transient_faults`, `registry_transitions`, `artifact_integrity`, `stack_lockdown`,
`load_held`) registers one check with `properties.prop`. A check takes a `Mode` (fast for the
test suite, long for `ferry bench reliability`), runs the property and returns a
`PropertyResult`: its figures and every violation it saw. A violation is an observed broken
promise (a 5xx, a lost row, a second production version, …) named in one line; a check never
passes or fails on a figure it was told to expect.
"""
