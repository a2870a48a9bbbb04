"""Analysis of networks: per-layer summaries and the output-size arithmetic."""

from cnnzoo.analysis.summary import GLOBAL, LayerRow, Summary, parse_input_size, summary

__all__ = ["GLOBAL", "LayerRow", "Summary", "parse_input_size", "summary"]
