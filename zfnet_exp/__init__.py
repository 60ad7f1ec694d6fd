"""zfnet-exp."""
