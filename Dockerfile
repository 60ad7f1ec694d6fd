# CUDA PyTorch base image; the project installs exactly as in the README: pip install -e ".[dev]".
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime

WORKDIR /workspace/zfnet-exp
COPY . .
RUN pip install --no-cache-dir -e ".[dev]"

ENV WANDB_MODE=offline
CMD ["python", "train.py"]
