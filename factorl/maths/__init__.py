"""The algorithm maths as small pure modules: factorisation, networks, mixers, targets
and the distributional projection. Agents compose these; nothing here knows about runners."""
