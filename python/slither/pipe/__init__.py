"""The Pipe DSL: local (host), worker (pool) and router stages, streamed through bounded buffers.

>>> pipe = (Pipe("text")                                            # doctest: +SKIP
...         .local("prepare", prepare)
...         .worker("analyze", "text_analyzer:analyze_batch", batch_size=50, on_error="skip")
...         .router("classify", [(is_positive, "positive"), (is_negative, "negative")]))
>>> result = pipe.run(docs, pool=pool)                               # doctest: +SKIP

Every input item ends in exactly one output bucket or in ``result.failures``.
"""

from slither.pipe.builder import DROP, Many, Pipe, PipeError, StageContext
from slither.pipe.result import PipeResult, StageFailure, StageStats

__all__ = ["DROP", "Many", "Pipe", "PipeError", "PipeResult", "StageContext", "StageFailure", "StageStats"]
