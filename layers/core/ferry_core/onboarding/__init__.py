"""Onboarding: a trained model becomes a registered version, with its card and checks.

- `builder`    a fitted pipeline to ONNX with its metrics, baselines and parity (and the demo model)
- `intake`     what `ferry register` reads (a pipeline and data, or an ONNX file and a schema)
- `use_cases`  the registration use case: read, build, check, register and audit
"""
