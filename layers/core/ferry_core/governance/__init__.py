"""The governance function's use cases: one request per governance action, dispatched over the
registry (`ferry_core.registry`) and the retraining runs (`ferry_core.retrain`).

- `requests`  the request, its actions and their dispatch, with the caller's verified identity
"""
