"""Kernel image loading (xen/arch/arm/kernel.c and libxenguest's ARM loaders)."""
from xenpy.loader.kernel import (KernelImage, LoaderError, Placement, UImageHeader, load_kernel,
                                 place_dom0, place_domu, probe, probe_module)

__all__ = ["KernelImage", "LoaderError", "Placement", "UImageHeader", "load_kernel",
           "place_dom0", "place_domu", "probe", "probe_module"]
