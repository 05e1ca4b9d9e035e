"""Runners: the loops that train any agent unchanged. `device` steps JAX-native environments
inside `jit`; the host runner is `factorl.train` for now."""
