"""The paper's diagnostics as pure functions of (model, tensors): callbacks and offline tasks call these."""
