# The knowgate image: the API (`knowgate serve`) and the chromadb server (`chroma run`).
FROM python:3.11-slim
WORKDIR /app
ENV HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 LITELLM_LOCAL_MODEL_COST_MAP=True \
    ANONYMIZED_TELEMETRY=False TOKENIZERS_PARALLELISM=false KNOWGATE_DATA_DIR=/data \
    PIP_NO_CACHE_DIR=1
COPY pyproject.toml constraints.txt ./
# The CPU torch wheel first, as the Makefile does, so no CUDA build is pulled in.
RUN pip install torch==2.13.0
COPY . ./knowgate-src
RUN pip install -c constraints.txt "./knowgate-src[server]"
EXPOSE 8000
CMD ["knowgate", "serve", "--host", "0.0.0.0", "--port", "8000"]
