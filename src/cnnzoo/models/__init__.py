"""Every model family; importing this package registers all of them.

One module per family, named after it (``vgg.py``, ``resnet.py``, ...).  Every module
in this package except ``base`` is a family and is imported here, so adding a family
is adding its file.
"""

import pkgutil
from importlib import import_module

for _module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _module.name != "base" and not _module.name.startswith("_"):
        import_module(f"{__name__}.{_module.name}")
