"""Output sizes of convolution and pooling, from the formula of the brief (004).

The code is :mod:`cnnzoo.conv_arithmetic`, re-exported here under its analysis name.  It
lives outside ``cnnzoo.analysis`` because importing that package imports torch (for
``summary``), and ``cnnzoo shape`` answers without torch.
"""

from cnnzoo.conv_arithmetic import (
    ROUNDING_NOTE,
    LayerSpec,
    conv_output_size,
    explain_chain,
    parse_layer,
    pool_output_size,
)

__all__ = ["ROUNDING_NOTE", "LayerSpec", "conv_output_size", "explain_chain", "parse_layer", "pool_output_size"]
