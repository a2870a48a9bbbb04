"""LeNet-5 (LeCun, Bottou, Bengio & Haffner 1998), Section II.B and Fig. 2.

32x32x1 input; C1 6@28x28 (5x5 conv), S2 6@14x14, C3 16@10x10 with the sparse
connection table of Table I, S4 16@5x5, C5 120 (5x5 conv, so 1x1), F6 84, output.
Subsampling layers are 2x2 averages with a trainable coefficient and bias per map,
followed by the squashing function ``1.7159 * tanh(2/3 * a)`` (Appendix A).

The paper's trainable layers C1..F6 hold exactly 60,000 parameters.  Its output layer
is a Euclidean RBF with fixed weights; we use a linear layer instead (84 x classes +
classes parameters), as every modern reimplementation does, so the network trains
with cross-entropy like the rest of the zoo.

Initialisation follows Appendix C: every trainable parameter of a unit is drawn uniformly from
``[-2.4/F, 2.4/F]``, F the unit's fan-in (its number of inputs, bias excluded): 25 for C1, 75,
100 or 150 for the C3 maps (Table I), 400 for C5, 120 for F6, 84 for the output layer.  An S2/S4
unit adds its four inputs and multiplies the sum by its coefficient (F = 4); this module
averages them, so its stored coefficient is four times the paper's, uniform in [-2.4, 2.4].
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn

from cnnzoo.models.base import ClassifierNet, linear_or_identity
from cnnzoo.registry import Paper, register_model

LENET_PAPER = Paper(
    title="Gradient-Based Learning Applied to Document Recognition",
    authors="Yann LeCun, Leon Bottou, Yoshua Bengio, Patrick Haffner",
    year=1998,
    url="http://yann.lecun.com/exdb/publis/pdf/lecun-98.pdf",
)

# Table I: which S2 feature maps (rows 0-5) each C3 feature map (0-15) reads.
C3_CONNECTIONS = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (4, 5, 0), (5, 0, 1),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (3, 4, 5, 0), (4, 5, 0, 1), (5, 0, 1, 2),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)  # fmt: skip


class ScaledTanh(nn.Module):
    """LeCun's squashing function ``A * tanh(S * a)`` with A = 1.7159, S = 2/3 (Appendix A)."""

    def forward(self, x: Tensor) -> Tensor:
        return 1.7159 * torch.tanh(x * (2.0 / 3.0))


class Subsampling(nn.Module):
    """S2/S4: 2x2 average, times a trainable coefficient, plus a trainable bias, per map."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(x) * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class SparseConv(nn.Module):
    """C3: each output map is a 5x5 convolution over its own subset of input maps.

    "A non-complete connection scheme keeps the number of connections within
    reasonable bounds [and] forces a break of symmetry in the network" (Section II.B).
    Each output map owns a small ``nn.Conv2d`` over the maps Table I lists for it.
    """

    def __init__(self, connections: tuple[tuple[int, ...], ...], kernel_size: int = 5) -> None:
        super().__init__()
        self.connections = connections
        for index, inputs in enumerate(connections):
            self.register_buffer(f"inputs_{index}", torch.tensor(inputs), persistent=False)
        self.maps = nn.ModuleList(nn.Conv2d(len(inputs), 1, kernel_size) for inputs in connections)

    def forward(self, x: Tensor) -> Tensor:
        outputs = [
            conv(x.index_select(1, getattr(self, f"inputs_{index}")))
            for index, conv in enumerate(self.maps)
        ]
        return torch.cat(outputs, dim=1)


class LeNet5(ClassifierNet):
    """LeNet-5: ``forward_features`` gives C5's 120x1x1 map, the head F6 and the output."""

    feature_trunk = ("features.*",)

    classifier_path = "classifier"

    def __init__(self, num_classes: int = 10, in_chans: int = 1, sparse_c3: bool = True) -> None:
        super().__init__(num_classes, in_chans)
        self.num_features = 84
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 6, kernel_size=5),  # C1
            ScaledTanh(),
            Subsampling(6),  # S2
            ScaledTanh(),
            SparseConv(C3_CONNECTIONS) if sparse_c3 else nn.Conv2d(6, 16, kernel_size=5),  # C3
            ScaledTanh(),
            Subsampling(16),  # S4
            ScaledTanh(),
            nn.Conv2d(16, 120, kernel_size=5),  # C5
            ScaledTanh(),
        )
        self.f6 = nn.Linear(120, 84)
        self.f6_act = ScaledTanh()
        self.classifier = linear_or_identity(84, num_classes)
        init_lenet_weights(self)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.f6_act(self.f6(torch.flatten(x, 1)))
        return x if pre_logits else self.classifier(x)


def init_lenet_weights(model: nn.Module) -> None:
    """Appendix C: weights and biases uniform in +-2.4/F, F the fan-in of the unit they feed."""
    if any(p.is_meta for p in model.parameters()):
        return  # built on the meta device (shapes only)
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            bound = 2.4 / module.weight[0].numel()  # inputs of one output unit
            nn.init.uniform_(module.weight, -bound, bound)
            if module.bias is not None:
                nn.init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, Subsampling):
            bound = 2.4 / 4  # four inputs summed, then scaled by the coefficient
            with torch.no_grad():
                # the module averages (sum / 4): the paper's coefficient c is 4c here
                module.weight.uniform_(-bound, bound).mul_(4)
                module.bias.uniform_(-bound, bound)


@register_model(family="lenet", paper=LENET_PAPER, input_size=(1, 32, 32), num_classes=10, fixed_size=True)
def lenet5(**kwargs) -> LeNet5:
    """LeNet-5: tanh, trainable average-pool subsampling, Table I's sparse C3 (60K params)."""
    return LeNet5(**kwargs)


# ------------------------------------------------------------------------------------------
# the two LeNets that Deep Compression (Han, Mao & Dally 2016, Tables 1 and 2) compresses
# ------------------------------------------------------------------------------------------

DEEP_COMPRESSION_PAPER = Paper(
    title="Deep Compression: Compressing Deep Neural Networks with Pruning, Trained Quantization and "
    "Huffman Coding",
    authors="Song Han, Huizi Mao, William J. Dally",
    year=2016,
    url="https://arxiv.org/abs/1510.00149",
)


class LeNet300100(ClassifierNet):
    """LeNet-300-100: LeCun et al. 1998's fully connected 300-100 net, as Han et al. 2016 compress it (Table 1).

    Three fully connected layers 784-300-100-10 with ReLU (the configuration of the paper's Table 1,
    whose registered paper is therefore Deep Compression's).  An MLP has no feature maps: ``forward_features`` is the image itself (one
    stage at stride 1), the head is the whole MLP and its pre-logits are ip2's 100 outputs.
    """

    feature_trunk = ("image",)

    classifier_path = "ip3"

    def __init__(self, num_classes: int = 10, in_chans: int = 1, image_side: int = 28) -> None:
        super().__init__(num_classes, in_chans)
        self.num_features = 100
        self.image = nn.Identity()
        self.ip1 = nn.Linear(in_chans * image_side * image_side, 300)
        self.ip2 = nn.Linear(300, 100)
        self.ip3 = linear_or_identity(100, num_classes)
        _init_xavier(self)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.image(x)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = torch.relu(self.ip1(torch.flatten(x, 1)))
        x = torch.relu(self.ip2(x))
        return x if pre_logits else self.ip3(x)


class LeNet5Caffe(ClassifierNet):
    """LeNet-5 as in Caffe's MNIST example, the one Han et al. 2016 compress (Table 2).

    conv1 20@5x5, 2x2 max-pool, conv2 50@5x5, 2x2 max-pool, ip1 800->500 with ReLU, ip2 500->10:
    431K weights.  Caffe's example has no nonlinearity after its convolutions (only ip1's ReLU),
    and neither has this one.
    """

    feature_trunk = ("features.*",)

    classifier_path = "ip2"

    def __init__(self, num_classes: int = 10, in_chans: int = 1) -> None:
        super().__init__(num_classes, in_chans)
        self.num_features = 500
        self.features = nn.Sequential(OrderedDict(
            conv1=nn.Conv2d(in_chans, 20, kernel_size=5),
            pool1=nn.MaxPool2d(kernel_size=2, stride=2),
            conv2=nn.Conv2d(20, 50, kernel_size=5),
            pool2=nn.MaxPool2d(kernel_size=2, stride=2),
        ))  # fmt: skip
        self.ip1 = nn.Linear(50 * 4 * 4, 500)
        self.ip2 = linear_or_identity(500, num_classes)
        _init_xavier(self)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = torch.relu(self.ip1(torch.flatten(x, 1)))
        return x if pre_logits else self.ip2(x)


def _init_xavier(model: nn.Module) -> None:
    """Caffe's example prototxts: ``xavier`` weight filler (uniform, variance 1/fan-in), zero biases."""
    if any(p.is_meta for p in model.parameters()):
        return
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            bound = (3.0 / module.weight[0].numel()) ** 0.5
            nn.init.uniform_(module.weight, -bound, bound)
            nn.init.zeros_(module.bias)


@register_model(family="lenet", paper=DEEP_COMPRESSION_PAPER, input_size=(1, 28, 28), num_classes=10,
                fixed_size=True)  # fmt: skip
def lenet_300_100(**kwargs) -> LeNet300100:
    """LeNet-300-100: fully connected 784-300-100-10 with ReLU (Han et al. 2016, Table 1; 267K weights)."""
    return LeNet300100(**kwargs)


@register_model(family="lenet", paper=DEEP_COMPRESSION_PAPER, input_size=(1, 28, 28), num_classes=10,
                fixed_size=True)  # fmt: skip
def lenet5_caffe(**kwargs) -> LeNet5Caffe:
    """LeNet-5 as in Caffe's example: conv 20, conv 50, fc 500, fc 10 (Han et al. 2016, Table 2; 431K weights)."""
    return LeNet5Caffe(**kwargs)
