"""No collector pauses that TF Serving does not have.

TF Serving is a C++ server: nothing stops all its threads to look for garbage. The stand-in is
Python on TensorFlow, whose import and a loaded SavedModel leave about 270,000 objects tracked by
Python's cyclic garbage collector. A full collection walks them all while holding the GIL: 130-160
ms measured in the image on an idle machine, several hundred on the two shared cores of a test
stack, during which every call in flight waits. The fault drills saw such waits as single requests
slower than their 500 ms bound, a behaviour of the stand-in, not of the server it stands in for.

So once a version is loaded, every object alive then is moved out of the collector's reach
(``gc.freeze``, Python's own tool for long-lived heaps): collections after that walk only what
requests create, which dies young. The price: the collector never looks at frozen objects again,
so a version unloaded later is freed only as far as reference counting frees it; what of it forms
cycles (TensorFlow's object graphs do) stays in memory. For a test fixture that loads a handful of
small versions in its life that is little: about 1.5 MB per load of the calculator (measured
in the image, eight loads and unloads), against pauses in every drill.
"""

from __future__ import annotations

import gc


def freeze_long_lived() -> None:
    """Move every object tracked now to the collector's permanent generation (cheap: no walk)."""
    gc.freeze()
