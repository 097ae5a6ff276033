"""The CPU backend: hearth's C kernels (*.c, each with the Python wrapper of its name), their
build and loader (native_build.py), the work-sharing thread pool (thread_pool.py) and the
one object the layers ask (backend.py: CpuBackend)."""
