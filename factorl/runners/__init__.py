"""Runners: the loops that train any agent unchanged. `host` steps simulators on the CPU,
`device` steps JAX-native environments inside `jit`; `session` is what both share (run folder,
resume, cadence, stopping)."""
