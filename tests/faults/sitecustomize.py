"""Test-only fault injection for a real ``train.py`` subprocess (put this folder first on ``PYTHONPATH``; Python
imports ``sitecustomize`` at start-up). With ``ZFNET_FAIL_CKPT_WRITE=<name>:<n>`` the n-th write of the checkpoint
file ``<name>`` (e.g. ``last.ckpt:1``) writes the first half of its bytes to disk and then fails with ENOSPC, as a
disk that fills up part-way through the write does. The write is Lightning's own (``fsspec``'s local file, which
``lightning.fabric.utilities.cloud_io._atomic_save`` writes the serialized checkpoint through)."""

import os

_SPEC = os.environ.get("ZFNET_FAIL_CKPT_WRITE")

if _SPEC:
    import errno

    from fsspec.implementations.local import LocalFileOpener

    _name, _, _nth = _SPEC.partition(":")
    _seen = [0]
    _write = LocalFileOpener.write

    def _failing_write(self, data, *args, **kwargs):
        base = os.path.basename(str(self.path))
        if base == _name or base.startswith(f".{_name}.tmp-"):
            _seen[0] += 1
            if _seen[0] == int(_nth or 1):
                _write(self, data[: len(data) // 2])
                self.f.flush()
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return _write(self, data, *args, **kwargs)

    LocalFileOpener.write = _failing_write
