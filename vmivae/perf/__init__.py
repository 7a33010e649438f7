"""Performance tooling: device defaults, the captured (CUDA graph) step, grouped runs,
data parallelism, and the benchmarks that measure them.

The method (``vmivae.latents``, ``models``, ``objectives``, ``steps``) never imports from here; the
training loop picks a faster variant from here when the config or the device asks for it.
"""
