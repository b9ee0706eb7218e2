"""ttc-serve: compute-optimal test-time inference behind an OpenAI-compatible API.

The source folders keep the project's top-level layout (``app/``, ``router/``, ``models/``,
``training/``); this package links them under one installed name, so that a wheel installs
``ttc_serve.app`` and not a top-level ``app`` that would shadow a user's own.
"""
