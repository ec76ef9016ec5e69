# Optional: the project image with the model repository baked in at /models, for air-gapped hosts
# that get one tarball and no repository to mount (`make image BAKE=1` / `make image-tarball BAKE=1`).
# Context: this file and model_repository/ (validated first by tritonops/stack/images.py).
ARG IMAGE
FROM ${IMAGE}
COPY --chown=root:root model_repository/ /models/
LABEL io.tritonops.model-repository="baked"
