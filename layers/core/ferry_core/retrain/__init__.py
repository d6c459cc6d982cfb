"""Retraining: fit a candidate, gate it, and take it through the retrain-and-promote workflow.

- `training`   labelled data in S3 to a candidate bundle (the training function)
- `candidate`  the candidate bundle in the model bucket
- `gate`       the validation gate and the validation step
- `workflow`   the state machine's governed steps; `lock` and `approval` hold their state
- `runs`       start and follow a run (the command line and the demo)
- `register`   a candidate bundle becomes the next version (a run's, or a manual one)
- `manual`     a candidate built and uploaded on the user's machine (`ferry register`)
"""
