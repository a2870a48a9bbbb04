"""One module per data set (or family of data sets), each registering with ``@register_dataset``.

Every module here is imported by :mod:`cnnzoo.data.registry` when the registry is first asked
anything, so adding a data set is adding a file.  These modules must not import torch, numpy or
PIL at import time (listing the data sets for ``--help`` stays cheap): the registered functions
import the format readers (:mod:`cnnzoo.data.idx`, :mod:`cnnzoo.data.cifar`, ...) when called.
"""
