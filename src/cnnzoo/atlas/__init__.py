"""The atlas: a static HTML site of every network and building block."""
