# Put in the guests' read-only skeleton by wasm-exec-server and found through
# PYTHONPATH, which the server sets for the bundled python3 only.
#
# CPython on WASI starts in "/" (wasi-libc's emulated working directory), and
# nothing else runs inside the interpreter before the program: this hook
# changes into the command's working directory ($PWD), gives the script back
# the argv[0] it was called with (the server made a relative script path
# absolute, since CPython resolves it against "/" before this runs), and then
# removes itself from sys.path and PYTHONPATH. A sitecustomize of the
# workspace's own, found later on the path, still runs.
import os as _os
import sys as _sys


def _wes_start():
    hook = _os.path.dirname(__file__)
    pwd = _os.environ.get("PWD", "")
    if pwd.startswith("/"):
        try:
            _os.chdir(pwd)
        except OSError:
            pass
    argv0 = _os.environ.pop("WES_PYTHON_ARGV0", None)
    if argv0 is not None and _sys.argv:
        _sys.argv[0] = argv0
    while hook in _sys.path:
        _sys.path.remove(hook)
    rest = [p for p in _os.environ.get("PYTHONPATH", "").split(":") if p and p != hook]
    # Relative PYTHONPATH entries were made absolute against "/" at start-up.
    for p in rest:
        if pwd.startswith("/") and not p.startswith("/"):
            seen_as = {"/" + p, "//" + p, _os.path.normpath("/" + p)}
            _sys.path[:] = [_os.path.join(pwd, p) if e in seen_as else e for e in _sys.path]
    if rest:
        _os.environ["PYTHONPATH"] = ":".join(rest)
    else:
        _os.environ.pop("PYTHONPATH", None)
    me = _sys.modules.pop("sitecustomize")
    try:
        import sitecustomize  # noqa: F401  (the workspace's own, if any)
    except ModuleNotFoundError as e:
        _sys.modules["sitecustomize"] = me
        if e.name != "sitecustomize":
            raise


_wes_start()
del _wes_start, _os, _sys
