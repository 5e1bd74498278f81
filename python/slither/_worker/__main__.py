"""Entry point of a worker process: ``python -m slither._worker`` (started by the pool, never by hand)."""

from slither._worker.loop import main

if __name__ == "__main__":
    main()
