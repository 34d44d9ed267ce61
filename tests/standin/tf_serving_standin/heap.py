"""No collector pauses that TF Serving does not have.

TF Serving is a C++ server: nothing stops all its threads to look for garbage. The stand-in is
Python on TensorFlow, whose import and a loaded SavedModel leave about 270,000 objects tracked by
Python's cyclic garbage collector. A full collection walks them all while holding the GIL: 130-160
ms measured in the image on an idle machine, several hundred on the two shared cores of a test
stack, during which every call in flight waits. The fault drills saw such waits as single requests
slower than their 500 ms bound, a behaviour of the stand-in, not of the server it stands in for.

So once a version is loaded, every object alive then is moved out of the collector's reach
(``gc.freeze``, Python's own tool for long-lived heaps): collections after that walk only what
requests create, which dies young. Unloaded versions are freed by reference counting as before;
only garbage cycles already present at a freeze are kept, a few kilobytes per load.
"""

from __future__ import annotations

import gc


def freeze_long_lived() -> None:
    """Move every object tracked now to the collector's permanent generation (cheap: no walk)."""
    gc.freeze()
