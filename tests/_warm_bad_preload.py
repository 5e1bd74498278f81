"""A preload module whose import fails with its own exception."""

raise RuntimeError("the model file is missing")
