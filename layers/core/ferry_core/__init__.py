"""Ferry's shared core.

Everything here is plain Python over pydantic, numpy and onnxruntime: no CDK, no AWS event
shapes, no environment reads at import time. AWS clients are passed in by the caller.
"""

__version__ = "0.1.0"
