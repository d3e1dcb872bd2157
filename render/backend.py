"""Pick the headless OpenGL platform (OSMesa or EGL) and import pyrender with its shader cache working."""
import ctypes
import os
import sys
import types

BACKENDS = ("auto", "osmesa", "egl")


def resolve_backend(name):
    """Turn a --backend value into a concrete platform: `auto` is EGL where an NVIDIA GPU is visible, else OSMesa."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)}")
    if name != "auto":
        return name
    # EGL on a CPU-only machine falls back to llvmpipe, which is slower than OSMesa there.
    return "egl" if os.path.exists("/dev/nvidia0") else "osmesa"


class _ContextByAddress:
    """Stand-in for `OpenGL.contextdata` inside pyrender's caches: keys on the context's integer address.

    Under OSMesa `getContext()` returns a new ctypes pointer object on every call, so pyrender's shader and font
    caches never hit: a program is compiled per primitive per frame and memory grows without bound.
    """

    @staticmethod
    def getContext():
        import OpenGL.contextdata
        return _address(OpenGL.contextdata.getContext())


def _address(context):
    """A GL context as a stable integer (EGL gives one already; OSMesa a fresh ctypes pointer per call)."""
    return context if isinstance(context, int) else ctypes.cast(context, ctypes.c_void_p).value


def import_pyrender(backend):
    """Set PYOPENGL_PLATFORM for `backend` (auto/osmesa/egl), import pyrender, patch its caches; return the module."""
    platform = resolve_backend(backend)
    current = os.environ.get("PYOPENGL_PLATFORM")
    if "OpenGL" in sys.modules and current != platform:
        raise ValueError(f"OpenGL was already imported for platform {current!r}; cannot switch to {platform!r}")
    os.environ["PYOPENGL_PLATFORM"] = platform
    # We parallelise with processes; llvmpipe's own raster threads only add synchronisation at these sizes
    # (measured ~2x faster per process with 0). Ignored by GPU drivers.
    os.environ.setdefault("LP_NUM_THREADS", "0")
    import OpenGL.contextdata
    # PyOpenGL itself keeps the arrays handed to glVertexAttribPointer & co. in a dict keyed by the current
    # context: under OSMesa a new ctypes object per call, so a new entry per call, never freed (slower and
    # slower: ~0.15 ms a call, a tenth of an object's cost). Keyed by address, each entry is simply replaced.
    if not getattr(OpenGL.contextdata, "_keyed_by_address", False):
        by_object = OpenGL.contextdata.getContext
        OpenGL.contextdata.getContext = lambda context=None: _address(by_object(context))
        OpenGL.contextdata._keyed_by_address = True
    import pyrender
    import pyrender.font
    import pyrender.shader_program
    shim = types.SimpleNamespace(contextdata=_ContextByAddress)
    pyrender.shader_program.OpenGL = shim
    pyrender.font.OpenGL = shim
    return pyrender
