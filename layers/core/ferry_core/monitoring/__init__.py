"""Monitoring of served models: sampled scoring traffic, baselines and drift reports.

`capture` (a sample of what was scored, written to the data bucket), `baseline` (a version's
training distribution, kept on its card), `drift` (PSI/KS of the captured window against it).
"""
