# The router image for GPU deployments: the router itself needs no GPU; it talks to vLLM servers
# (the vllm/vllm-openai image, see deploy/compose.yaml) over HTTP. The models' config.json and
# tokenizer_config.json (FLOPs cost model, chat template) are mounted at /models/{generator,prm}.
# BASE: any image with Python 3.11+ and pip; where no registry is reachable, one made locally
ARG BASE=python:3.11-slim
FROM ${BASE}
WORKDIR /srv
COPY pyproject.toml README.md ./
COPY app app
COPY router router
COPY models models
COPY training training
# ttc_serve/ links the folders above as the one installed package (pyproject.toml says why)
COPY ttc_serve ttc_serve
RUN pip install --no-cache-dir . && useradd --create-home --uid 10001 ttc
USER 10001
ENV TTC_HOST=0.0.0.0 TTC_PORT=8000 \
    TTC_GENERATOR_DIR=/models/generator TTC_PRM_DIR=/models/prm
EXPOSE 8000
# on whatever port TTC_PORT sets (podman: build with --format docker, as OCI images carry no healthcheck)
HEALTHCHECK --interval=10s --timeout=6s CMD ["ttc-serve", "healthcheck"]
CMD ["ttc-serve", "serve"]
