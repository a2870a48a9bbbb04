"""The atlas: a static HTML site of every network and building block (``cnnzoo atlas``, docs/atlas.md).

- ``build.py``: the command's work: the output folder's rules, the facts, every page written
- ``facts.py``: one traced summary per model (cached), its container modules and building blocks
- ``blocks.py``: the building blocks as data: text, cost formula, worked example, how to find them
- ``content.py``: the lineage between the nets and which shipped recipe trains which
- ``pages.py`` / ``svg.py``: the HTML pages and the drawings (timeline, chart, model diagram)
- ``static/``: the stylesheet and the filter script, copied next to ``index.html``
"""
