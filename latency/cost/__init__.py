"""Derived prices: a kernel priced from its device's spec sheet, every term of it stated.

    gpu.py   the GPU cost model (tile and wave quantisation over the SMs, achievable throughput per
             precision and unit, DRAM and L2 traffic, launch cost, per-inference overhead) that the
             GPU targets of :mod:`latency.targets.gpu` price their kernels with

A target names its cost model in its declaration (``Target.cost``); the estimator asks it for a
kernel's price where no measured profile row prices the kernel. Nothing here is measured: every
price carries the source ``derived:gpu-model`` and a ``detail`` with the terms it came from.
"""
