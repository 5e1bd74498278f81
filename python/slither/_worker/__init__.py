"""The code that runs inside each worker process.

Stdlib plus cloudpickle only, and never the native extension: a worker starts cheaply, and no Rust
runtime state is ever inherited across a fork.
"""
