"""The model registry: its DynamoDB table and the use cases that change it.

- `table`        the item kinds and their DynamoDB attributes (the only module that encodes them)
- `reader`       cards, stage pointers, history and listings, with short caches
- `writer`       version numbers, version items and the transaction items of stage moves
- `governance`   promote, roll back, approve, reject, archive, canaries: each with its audit entry
- `registration` a built model to the model bucket and the registry (and the helpers
                 `ferry_core.retrain.register` registers candidate bundles with)
- `lineage`      where a model came from (commit, data, code, dependency lock)
- `events`       governance events on EventBridge
"""
