"""The validation gate: every retraining candidate passes it before it can be promoted.

`validate.validate_candidate` is the step the validation function runs: read the bundle,
fetch the champion, run the checks, store `validation.json` beside the bundle. Each check is
one module (`schema`, `parity`, `metrics`, `segments`, `scenarios`, `latency`); `reference`
decodes the candidate's reference rows they all share, `report` is the verdict, and `policy`
holds the thresholds and the function's settings.
"""
