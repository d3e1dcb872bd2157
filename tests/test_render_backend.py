"""The OpenGL fixes of render/backend.py: caches and PyOpenGL's pointer store keyed by context address."""
from render.camera import View
from render.procedural import make_object


def test_pyopengl_pointer_store_does_not_grow_per_call():
    """Under OSMesa each getContext() was a new key: an entry per GL call, never freed, slower every object."""
    from render.renderer import Renderer
    renderer = Renderer(24)   # first: it chooses the OpenGL platform
    import OpenGL.contextdata
    stored = lambda: sum(len(storage) for storage in OpenGL.contextdata.STORAGES)
    renderer.render_views(make_object(2, 0), [View(0.0, 5.0)])
    before = stored()
    for i in range(1, 6):
        renderer.render_views(make_object(2, i), [View(10.0 * i, 5.0)])
    after = stored()
    renderer.close()
    assert after == before, (before, after)   # one entry per context, replaced, not one per call
