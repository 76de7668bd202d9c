"""knowgate.api: the OpenAI-compatible chat server (``create_app`` in ``app``, ``knowgate serve``)."""
