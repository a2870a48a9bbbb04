"""int8 inference on the CPU: the paths that quantize convolutions, against fp32 eager, in one process.

ResNet-18 (cnnzoo's, torchvision's architecture) at 3x224x224, batch 1 by default, every runner
timed interleaved (one call of each in turn, the order reversed every other round:
``cnnzoo.deploy.bench.measure_interleaved``), denormals flushed for all.  The runners:

* ``eager``: fp32 PyTorch, the baseline of every ratio;
* ``onnxruntime fp32``: the exported file in ONNX Runtime;
* ``onnxruntime int8``: cnnzoo's int8 path (``cnnzoo.quantization.int8.quantize_onnx``: static
  QDQ, uint8 activations, int8 per-channel weights) -- what ``cnnzoo quantize --scheme int8``
  writes and ``cnnzoo bench --int8`` times;
* ``pt2e int8 inductor``: torchao's PT2E flow with the X86 Inductor quantizer, then
  ``torch.compile`` with freezing (only when torchao is installed);
* ``openvino int8``: OpenVINO running the same QDQ file (only when openvino is installed).

Every int8 model is calibrated on the same 32 random normal images (the speed does not depend on
the ranges).  The last line gives each ratio over eager.

    python benchmarks/int8_speed.py                      # 2 threads, batch 1
    python benchmarks/int8_speed.py --threads 1 --batch-size 1,8 --repeats 30
"""

from __future__ import annotations

import argparse
import os
import tempfile


def pt2e_runner(model, images, calibration):
    """torchao's PT2E post-training quantization for x86 and Inductor, compiled once (untimed)."""
    import torch
    import torch._inductor.config as inductor_config
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as x86
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    inductor_config.freezing = True  # the int8 weights are packed as constants (torchao's tutorial)
    quantizer = x86.X86InductorQuantizer().set_global(x86.get_default_x86_inductor_quantization_config())
    prepared = prepare_pt2e(torch.export.export(model, (images,)).module(), quantizer)
    for start in range(0, len(calibration) - len(images) + 1, len(images)):  # exported at this batch size
        prepared(calibration[start:start + len(images)])
    compiled = torch.compile(convert_pt2e(prepared))

    def run():
        with torch.no_grad():
            return compiled(images)

    run.tracks_memory = False
    return run


def openvino_runner(path, images, threads):
    import openvino

    core = openvino.Core()
    config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
    request = core.compile_model(core.read_model(str(path)), "CPU", config).create_infer_request()
    feed = images.numpy()

    def run():
        import torch

        return torch.from_numpy(request.infer([feed])[0].copy())

    run.tracks_memory = False
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--input", default="3x224x224")
    parser.add_argument("--batch-size", default="1", help="comma-separated batch sizes (default 1)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    import importlib.util

    import torch

    from cnnzoo.deploy.bench import (describe_machine, flushed_denormals, inference_runner, int8_runner,
                                     machine, measure_interleaved, random_batch)  # fmt: skip
    from cnnzoo.deploy.export import export_onnx, onnxruntime_session
    from cnnzoo.quantization.int8 import Int8Model, int8_instructions, quantize_onnx
    from cnnzoo.registry import create_model

    torch.set_num_threads(args.threads)
    input_size = tuple(int(v) for v in args.input.split("x"))
    torch.manual_seed(0)
    model = create_model(args.model, in_chans=input_size[0]).eval()
    calibration = random_batch(input_size, 32, seed=1)
    print(describe_machine(machine()) + f"; int8 instructions {int8_instructions() or 'none (no VNNI)'}")
    print(f"{args.model} {args.input}, int8 calibrated on 32 random normal images")
    with tempfile.TemporaryDirectory() as folder, flushed_denormals():
        fp32_file, int8_file = os.path.join(folder, "fp32.onnx"), os.path.join(folder, "int8.onnx")
        export_onnx(model, fp32_file, input_size)
        quantize_onnx(model, calibration, int8_file)
        int8 = Int8Model(int8_file, num_classes=model.num_classes, in_chans=input_size[0], threads=args.threads)
        fp32_session = onnxruntime_session(fp32_file, args.threads, denormals_as_zero=True)
        ratios = []
        for batch in (int(v) for v in args.batch_size.split(",")):
            images = random_batch(input_size, batch)
            feed = {fp32_session.get_inputs()[0].name: images.numpy()}

            def ort_fp32(feed=feed):
                return fp32_session.run(None, feed)[0]

            ort_fp32.tracks_memory = False
            runners = {"eager": inference_runner(model, images), "onnxruntime fp32": ort_fp32,
                       "onnxruntime int8": int8_runner(int8, images)}  # fmt: skip
            unavailable = {}
            for label, found, build in (
                ("pt2e int8 inductor", importlib.util.find_spec("torchao"),
                 lambda: pt2e_runner(model, images, calibration)),
                ("openvino int8", importlib.util.find_spec("openvino"),
                 lambda: openvino_runner(int8_file, images, args.threads)),
            ):  # fmt: skip
                if not found:
                    unavailable[label] = "not installed"
                    continue
                try:
                    runners[label] = build()
                except Exception as exc:  # noqa: BLE001 - report it and go on with the others
                    unavailable[label] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:150]}"
            results = measure_interleaved(runners, batch, args.repeats, args.warmup, unavailable)
            base = results["eager"].latency_median
            print(f"\n| batch | runner | latency median | p90 | vs eager |\n|---|---|---:|---:|---:|")
            for label, m in results.items():
                if m.unavailable:
                    print(f"| {batch} | {label} | unavailable: {m.unavailable} | | |")
                    continue
                print(f"| {batch} | {label} | {1000 * m.latency_median:.2f} ms | {1000 * m.latency_p90:.2f} ms | "
                      f"{base / m.latency_median:.2f}x |")  # fmt: skip
                if label != "eager":
                    ratios.append(f"{label} {base / m.latency_median:.2f}x at batch {batch}")
    print(f"\nload average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print("ratios over fp32 eager: " + "; ".join(ratios))


if __name__ == "__main__":
    main()
