"""fastserve: a production model server, wire compatible with TensorFlow Serving."""

import os as _os
import sys as _sys

__version__ = "0.1.0"


def _import_core() -> None:
    """Imports the C++ extension so that it binds to its own grpc++ and protobuf first.

    TensorFlow loads its libraries with RTLD_GLOBAL, and they export protobuf's (and
    BoringSSL's) symbols under the same names as the system's: an extension imported after
    TensorFlow would otherwise call into TensorFlow's copies. RTLD_DEEPBIND (glibc) makes the
    extension look in its own dependencies before the global scope.
    """
    flags = _sys.getdlopenflags()
    deepbind = getattr(_os, "RTLD_DEEPBIND", 0)
    _sys.setdlopenflags(flags | deepbind | _os.RTLD_NOW)
    try:
        from fastserve import _core  # noqa: F401
    finally:
        _sys.setdlopenflags(flags)


_import_core()
