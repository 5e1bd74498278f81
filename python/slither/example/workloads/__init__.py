"""Stdlib-only workloads: data generation, the worker-side functions, serial references and threaded
baselines. Nothing here imports slither's extension, so the same code runs in the workers and, for
``--baseline-python``, in another interpreter.
"""
