"""Every model family; importing this package registers all of them.

One module per family, named after it (``vgg.py``, ``resnet.py``, ...).  Every module
in this package except ``base`` is a family and is imported here, so adding a family
is adding its file.  ``index.json`` beside them is the families' metadata for the
torch-free ``cnnzoo list`` / ``cnnzoo info``; after adding or changing a model, regenerate
it with ``python -m cnnzoo.model_index`` (a test fails until then).
"""

from importlib import import_module

from cnnzoo.registry import family_module_names

for _name in family_module_names(__path__[0]):
    import_module(f"{__name__}.{_name}")
