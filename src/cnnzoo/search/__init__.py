"""Architecture search with reinforcement learning (Zoph & Le 2017, "Neural Architecture Search with
Reinforcement Learning", ICLR, arXiv:1611.01578).

* :mod:`cnnzoo.search.space`: the search space as data, the architecture text and the token codec
  (torch-free);
* :mod:`cnnzoo.search.budget`: a child's parameters and multiply-adds, and the check that a space
  admits a child within a budget;
* :mod:`cnnzoo.search.controller`: the LSTM controller trained with REINFORCE, and random search;
* the child network itself is the registered model ``nas_child`` (:mod:`cnnzoo.models.nas`).

Importing this package imports no torch.
"""
