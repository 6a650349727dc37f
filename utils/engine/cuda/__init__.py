"""CUDA kernels compiled from the engine's own ``@njit`` sources (numba.cuda), for GPU workers.

``target`` turns an ``@njit`` function into a device function, compiles and launches kernels and
moves arrays; ``indicator_kernels`` runs the indicator steps as panel kernels. Importing this
package imports nothing from numba.cuda: the modules do that lazily, on first use.
"""
