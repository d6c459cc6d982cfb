"""Real-time serving: the HTTP contract, scoring, the ONNX runtime and its guard, the canary.

`api` (request/response models, the one error→status map), `scoring` (resolve a version,
load it, validate, score), `inference` (the ONNX session and its model pool), `validator`
(instances against a card's input schema), `onnx_guard` (an artifact proves itself before it
loads), `canary` (the verdict on a canary version beside production).
"""
