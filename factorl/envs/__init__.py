"""Environments: `host` (Gymnasium and the DeepMind Control Suite, stepped on the CPU) and
`device` (JAX-native environments behind a small protocol, stepped inside `jit`)."""
