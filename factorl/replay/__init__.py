"""Replay: `host` (NumPy streams with n-step returns, saved in checkpoints) and `device`
(flashbax buffers usable inside `jit`)."""
