"""Time to build a feature extractor: ``cnnzoo.features.features_only`` against torchvision's
``create_feature_extractor`` cutting the same net after the same stage modules.

Both are fx cuts of the net in training and eval mode; torchvision's tracer names each node by
comparing it with every node recorded before it (quadratic in the graph's length), cnnzoo's reads
the module stack fx records on each node.  For each model the two are built in turn, ``--repeats``
times each (the median is printed), and their maps on one input are checked to be identical.
cnnzoo's total includes measuring the stages (two shape-only forwards on the meta device), which
torchvision is spared: it is given the stage modules cnnzoo found.  The cut alone (the total less
``feature_stages``, timed on its own) is what compares like for like.

    python benchmarks/features_build.py
    python benchmarks/features_build.py --models resnet1202,densenet264 --repeats 3

The machine (CPU model, threads, load average) is printed first.
"""

from __future__ import annotations

import argparse
import statistics
import time

DEFAULT_MODELS = "resnet20,resnet50,densenet121,inception_v3,resnet110,densenet_bc_250_24,preact_resnet1001,resnet1202"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=DEFAULT_MODELS, help=f"comma-separated (default {DEFAULT_MODELS})")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--repeats", type=int, default=1, help="builds of each extractor per model (default 1)")
    args = parser.parse_args()

    import torch
    from torchvision.models.feature_extraction import create_feature_extractor

    import cnnzoo
    from cnnzoo.deploy.bench import describe_machine, machine
    from cnnzoo.features import feature_stages, features_only

    torch.set_num_threads(args.threads)
    print(describe_machine(machine()))
    print("| model | fx nodes | cnnzoo features_only | of which measuring stages | cnnzoo's cut | "
          "torchvision create_feature_extractor | speed-up of the cut | speed-up in all |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in args.models.split(","):
        info = cnnzoo.model_info(name)
        model = cnnzoo.create_model(name).eval()
        side = info.input_size[1]

        def ours():
            return features_only(model, input_side=side)

        def theirs(modules):
            return create_feature_extractor(model, return_nodes={m: str(i) for i, m in enumerate(modules)},
                                            suppress_diff_warning=True)  # fmt: skip

        ours_s, stages_s, theirs_s = [], [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            extractor = ours()
            ours_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            feature_stages(model, side)
            stages_s.append(time.perf_counter() - start)
            modules = extractor.feature_info.module_name()
            start = time.perf_counter()
            reference = theirs(modules)
            theirs_s.append(time.perf_counter() - start)
        small = side if info.fixed_size else min(side, max(info.min_size or 32, 64))
        x = torch.randn(1, info.input_size[0], small, small)
        with torch.no_grad():
            maps, expected = extractor.eval()(x), reference.eval()(x)
        same = all(torch.equal(a, expected[str(i)]) for i, a in enumerate(maps))
        if not same:
            raise SystemExit(f"{name}: the two extractors give different maps")
        nodes = len(torch.fx.symbolic_trace(model).graph.nodes)
        total, stages, b = (statistics.median(t) for t in (ours_s, stages_s, theirs_s))
        cut = max(total - stages, 1e-3)
        print(f"| {name} | {nodes} | {total:.2f} s | {stages:.2f} s | {cut:.2f} s | {b:.2f} s | {b / cut:.1f}x "
              f"| {b / total:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
