"""Deep Compression (Han, Mao & Dally 2016): pruning with masks kept, weight sharing, Huffman coding, the file."""

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import cnnzoo
from cnnzoo.cli import main
from cnnzoo.compress import huffman
from cnnzoo.compress.deep_compression import (
    PAPER_TABLES,
    CompressedFileError,
    KeepMasks,
    _sparse_entries,
    decode_model,
    dense_state_dict,
    encode_model,
    kept_shares,
    magnitude_prune,
    prunable_layers,
)
from cnnzoo.compress.weight_sharing import kmeans_1d, share_weights, shared_layers
from cnnzoo.modelspec import ModelSpec

SYN = "synthetic:classes=4,channels=1,size=28,train=128,test=32"
FAST = ["--threads", "1", "--no-progress", "--batch-size", "64"]


def _tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


def _shared_net(seed: int = 0) -> nn.Module:
    """lenet5_caffe, pruned as in the paper's Table 2 and weight-shared at 8/5 bits (no training)."""
    torch.manual_seed(seed)
    model = ModelSpec("lenet5_caffe", num_classes=10, in_chans=1).build()
    layers = prunable_layers(model)
    magnitude_prune(layers, kept_shares("lenet5_caffe", layers, None))
    for name, module in layers.items():
        share_weights(module, 5 if isinstance(module, nn.Linear) else 8)
    return model


# -- k-means and the codebook ---------------------------------------------------------------


@pytest.mark.parametrize("bits", [2, 5])
def test_kmeans_gives_at_most_2_to_the_bits_values_and_each_weight_its_nearest(bits):
    values = torch.randn(3000, generator=torch.Generator().manual_seed(0)) ** 3
    codebook, assignment = kmeans_1d(values, 2**bits)
    assert 1 < len(codebook) <= 2**bits
    assert torch.all(codebook[1:] > codebook[:-1])
    assert torch.bincount(assignment, minlength=len(codebook)).min() > 0  # empty clusters dropped
    nearest = (values[:, None] - codebook[None, :].double()).abs().argmin(1)
    distance = (values - codebook[assignment]).abs()
    assert torch.allclose(distance, (values - codebook[nearest]).abs(), atol=1e-6)
    # linear initialisation (Section 3.2) reaches the extreme weights
    assert codebook[0] < values.min() / 2 and codebook[-1] > values.max() / 2


def test_shared_layers_hold_at_most_2_to_the_bits_distinct_values_and_keep_the_zeros():
    model = _shared_net()
    for name, module in shared_layers(model).items():
        weight = module.weight.detach()
        bits = 5 if isinstance(module, nn.Linear) else 8
        assert len(torch.unique(weight[weight != 0])) <= 2**bits
        kept = PAPER_TABLES["lenet5_caffe"].kept[name]
        assert (weight != 0).float().mean().item() == pytest.approx(kept, abs=0.01)


def test_a_centroid_gets_the_sum_of_its_weights_gradients():
    """Section 3.3: the codebook's gradient is the gradients of the weights, summed per cluster."""
    layer = nn.Linear(20, 10)
    magnitude_prune({"l": layer}, {"l": 0.5})
    sharing = share_weights(layer, 2)
    x = torch.randn(8, 20)
    layer(x).square().sum().backward()
    codebook = layer.parametrizations.weight.original
    dense = layer.weight.detach().clone().requires_grad_()
    torch.nn.functional.linear(x, dense, layer.bias).square().sum().backward()
    expected = torch.zeros_like(codebook).index_add_(0, sharing.indices[sharing.mask], dense.grad[sharing.mask])
    torch.testing.assert_close(codebook.grad, expected)


# -- pruning with the masks kept ----------------------------------------------------------------


def test_masks_stay_zero_through_fine_tuning(tmp_path):
    model = cnnzoo.create_model("lenet_300_100", num_classes=4)
    layers = prunable_layers(model)
    magnitude_prune(layers, {name: 0.2 for name in layers})
    zeros = {name: (m.weight == 0).clone() for name, m in layers.items()}
    result = cnnzoo.train.fit(model, SYN, epochs=1, lr=0.5, out=str(tmp_path / "run"), verbose=False, progress=False,
                              threads=1, callbacks=[KeepMasks(list(layers))])  # fmt: skip
    assert result.status == "completed"
    for name, module in layers.items():
        weight = module.weight.detach()
        assert (weight[zeros[name]] == 0).all()
        assert (weight[~zeros[name]] != 0).float().mean() > 0.99  # the kept weights did train
        assert weight.count_nonzero() == pytest.approx(0.2 * weight.numel(), abs=1)


def test_the_papers_models_get_its_per_layer_shares_others_the_ratio():
    layers = prunable_layers(cnnzoo.create_model("lenet5_caffe"))
    assert kept_shares("lenet5_caffe", layers, None) == PAPER_TABLES["lenet5_caffe"].kept
    # Table 4's AlexNet shares name every layer of ours, whatever its classes and channels
    alexnet = prunable_layers(cnnzoo.create_model("alexnet", num_classes=10, in_chans=1))
    assert kept_shares("alexnet", alexnet, None) == PAPER_TABLES["alexnet"].kept
    assert set(kept_shares("lenet5_caffe", layers, 0.5).values()) == {0.5}
    lenet5 = prunable_layers(cnnzoo.create_model("lenet5"))
    shares = kept_shares("lenet5", lenet5, None)
    assert len(shares) == 20 and all(share == pytest.approx(0.1) for share in shares.values())
    # per-layer exceptions: a name covers its sublayers (C3's sixteen maps)
    shares = kept_shares("lenet5", lenet5, "0.95,features.0=0.2,features.4=0.5")
    assert shares["features.0"] == pytest.approx(0.8) and shares["features.8"] == pytest.approx(0.05)
    assert {shares[f"features.4.maps.{i}"] for i in range(16)} == {0.5}
    # the paper's Table 2 totals 431K weights, Table 1 267K (we count 266.2K: the table rounds up)
    assert sum(m.weight.numel() for m in layers.values()) == 430_500
    assert sum(m.weight.numel() for m in prunable_layers(cnnzoo.create_model("lenet_300_100")).values()) == 266_200


# -- Huffman coding ---------------------------------------------------------------------------


@pytest.mark.parametrize("alphabet", [1, 2, 9, 33, 257])
def test_huffman_round_trip(alphabet):
    rng = np.random.default_rng(alphabet)
    symbols = np.minimum(rng.geometric(0.25, size=5000) - 1, alphabet - 1)
    lengths = huffman.code_lengths(np.bincount(symbols, minlength=alphabet))
    stored = huffman.unpack_lengths(huffman.pack_lengths(lengths), alphabet)
    np.testing.assert_array_equal(huffman.decode(huffman.encode(symbols, lengths), stored, len(symbols)), symbols)


@pytest.mark.parametrize("chunk_bits, levels", [(61, 0), (64, 2), (1000, 3), (1 << 20, 6)])
def test_huffman_decoding_across_stretches_and_doubling_levels(chunk_bits, levels, monkeypatch):
    """The decoder reads ``_CHUNK_BITS`` at a time and walks 2^_LEVELS codes per step: codes that cross a
    stretch's end, chains shorter than one walk, and the count ending inside a stretch all decode alike."""
    monkeypatch.setattr(huffman, "_CHUNK_BITS", chunk_bits)
    monkeypatch.setattr(huffman, "_LEVELS", levels)
    rng = np.random.default_rng(chunk_bits)
    symbols = np.minimum(rng.geometric(0.2, size=3001) - 1, 40)
    lengths = huffman.code_lengths(np.bincount(symbols, minlength=41))
    data = huffman.encode(symbols, lengths)
    np.testing.assert_array_equal(huffman.decode(data, lengths, len(symbols)), symbols)
    np.testing.assert_array_equal(huffman.decode(huffman.encode(symbols[:7], lengths), lengths, 7), symbols[:7])
    with pytest.raises(huffman.HuffmanError, match="truncated"):
        huffman.decode(data[: len(data) // 2], lengths, len(symbols))
    with pytest.raises(huffman.HuffmanError, match="left over"):
        huffman.decode(data, lengths, len(symbols) - 40)


def test_huffman_beats_fixed_width_on_a_skewed_stream_and_matches_the_entropy():
    rng = np.random.default_rng(0)
    probabilities = 0.5 ** np.arange(1, 33)
    probabilities /= probabilities.sum()
    symbols = rng.choice(32, size=20_000, p=probabilities)
    counts = np.bincount(symbols, minlength=32)
    data = huffman.encode(symbols, huffman.code_lengths(counts))
    fixed = 5 * len(symbols) / 8
    assert len(data) < 0.5 * fixed
    p = counts[counts > 0] / len(symbols)
    entropy_bytes = -(p * np.log2(p)).sum() * len(symbols) / 8
    assert entropy_bytes <= len(data) <= entropy_bytes * 1.05 + 1


def test_huffman_lengths_are_limited_and_still_a_prefix_code():
    fibonacci = [1, 1]
    while len(fibonacci) < 40:
        fibonacci.append(fibonacci[-1] + fibonacci[-2])
    lengths = huffman.code_lengths(fibonacci)
    assert lengths.max() == huffman.MAX_CODE_LENGTH
    huffman.check_lengths(lengths)  # complete (Kraft sum 1)
    symbols = np.arange(40).repeat(3)
    np.testing.assert_array_equal(huffman.decode(huffman.encode(symbols, lengths), lengths, len(symbols)), symbols)


def test_huffman_streams_that_end_early_or_carry_garbage_are_errors():
    symbols = np.array([0, 1, 2, 2, 2, 2, 1, 0] * 10)
    lengths = huffman.code_lengths(np.bincount(symbols))
    data = huffman.encode(symbols, lengths)
    with pytest.raises(huffman.HuffmanError, match="truncated"):
        huffman.decode(data[:-4], lengths, len(symbols))
    with pytest.raises(huffman.HuffmanError, match="left over"):
        huffman.decode(data + b"\xff", lengths, len(symbols))


# -- the sparse index and the file ---------------------------------------------------------------


def test_a_gap_beyond_the_index_bits_gets_filler_entries():
    """Section 2, Figure 2: with 3-bit differences a gap of 11 is a filler (8) and then 3."""
    mask = np.zeros(40, dtype=bool)
    mask[[1, 4, 15, 39]] = True
    indices = np.zeros(40, dtype=np.int64)
    indices[[1, 4, 15, 39]] = [5, 6, 7, 4]
    symbols, gap_codes = _sparse_entries(indices, mask, clusters=8, index_bits=3)
    # gaps 2, 3, 11 = 8 + 3, 24 = 8 + 8 + 8 (the last filler-free entry holds the full 8)
    np.testing.assert_array_equal(gap_codes + 1, [2, 3, 8, 3, 8, 8, 8])
    np.testing.assert_array_equal(symbols, [5, 6, 8, 7, 8, 8, 4])  # 8: the filler symbol
    np.testing.assert_array_equal(np.cumsum(gap_codes + 1)[symbols < 8] - 1, [1, 4, 15, 39])


def test_encode_decode_round_trip_is_exact():
    model = _shared_net(seed=3)
    data, reports = encode_model(model)
    decoded = decode_model(data)
    expected = dense_state_dict(model)
    assert set(decoded) == set(cnnzoo.create_model("lenet5_caffe").state_dict())
    for key, value in expected.items():
        assert decoded[key].dtype == value.dtype
        assert torch.equal(decoded[key], value), key
    assert sum(r.stored_bytes for r in reports) == len(data)
    # Table 2's shares at 8/5 bits: most of the paper's 39x (small-layer codebooks and the biases cost some)
    assert 4 * 430_500 / len(data) > 25


@pytest.mark.parametrize("damage", ["truncated", "flipped", "magic", "empty"])
def test_damaged_files_are_one_line_errors(damage):
    data, _ = encode_model(_shared_net())
    bad = {"truncated": data[: len(data) // 2], "flipped": data[:-10] + bytes([data[-10] ^ 1]) + data[-9:],
           "magic": b"PK" + data[2:], "empty": b""}[damage]  # fmt: skip
    with pytest.raises(CompressedFileError) as caught:
        decode_model(bad)
    assert "\n" not in str(caught.value)


# -- the command line, end to end --------------------------------------------------------------------


@pytest.fixture(scope="module")
def compressed(tmp_path_factory):
    """A tiny net trained one epoch on synthetic data, deep-compressed with one epoch per stage."""
    root = tmp_path_factory.mktemp("dc")
    source, out = root / "source", root / "compressed"
    assert main(["train", "lenet_300_100", "--data", SYN, "--epochs", "1", "--out", str(source), *FAST]) == 0
    before = _tree_digest(source)
    return source, out, before


def test_deep_compress_end_to_end(compressed, capsys):
    source, out, before = compressed
    capsys.readouterr()
    code = main(["deep-compress", str(source), "--prune-ratio", "0.8", "--epochs", "1", "--share-lr", "0.003",
                 "--out", str(out), *FAST])  # fmt: skip
    assert code == 0
    from cnnzoo.train.config import read_config

    # the weight sharing's own learning rate; the pruning's is a tenth of the source's
    assert read_config(out / "share" / "config.yaml").lr == 0.003
    assert read_config(out / "prune" / "config.yaml").lr == pytest.approx(read_config(source / "config.yaml").lr / 10)
    printed = capsys.readouterr().out
    assert "ip1" in printed and "kept %" in printed and "total" in printed
    line = [row for row in printed.splitlines() if row.startswith("compression: ")][0]
    ratio = float(line.split()[1].removesuffix("x"))
    assert ratio == pytest.approx((out / "best.safetensors").stat().st_size / (out / "model.dcz").stat().st_size,
                                  rel=0.05)  # fmt: skip
    assert _tree_digest(source) == before  # the source run is only read

    # the run directory is the decoded model: load_run, eval and summary take it
    run = cnnzoo.load_run(out, device="cpu")
    state = decode_model(out / "model.dcz")
    assert set(run.model.state_dict()) == set(state)
    for key, value in run.model.state_dict().items():
        assert torch.equal(value, state[key]), key
    weights = run.model.ip1.weight
    assert (weights != 0).float().mean().item() == pytest.approx(0.2, abs=0.01)
    assert len(torch.unique(weights[weights != 0])) <= 2**5
    # ... and equals the fine-tuned shared model of stage 2, bit for bit
    shared = cnnzoo.load_run(out / "share", device="cpu").model
    for key, value in dense_state_dict(shared).items():
        assert torch.equal(value, state[key]), key
    assert main(["eval", str(out), "--device", "cpu"]) == 0
    assert "top-1" in capsys.readouterr().out
    assert main(["summary", str(out)]) == 0


def test_a_truncated_compressed_file_through_the_cli_is_one_line_exit_2(compressed, tmp_path, capsys):
    """``--resume`` of a finished compression decodes its file again: a damaged one is refused, untouched."""
    source, out, _ = compressed
    if not (out / "model.dcz").exists():
        pytest.skip("needs the end-to-end run")
    damaged = tmp_path / "run"
    shutil.copytree(out, damaged)
    data = (out / "model.dcz").read_bytes()
    (damaged / "model.dcz").write_bytes(data[: len(data) - 7])
    before = _tree_digest(damaged)
    capsys.readouterr()
    assert main(["deep-compress", str(source), "--prune-ratio", "0.8", "--out", str(damaged), "--resume", *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "model.dcz: truncated" in err
    assert _tree_digest(damaged) == before
    # the intact copy passes the same check
    assert main(["deep-compress", str(source), "--prune-ratio", "0.8", "--out", str(out), "--resume", *FAST]) == 0
    assert "decodes to its model" in capsys.readouterr().out


def test_an_interrupted_compression_resumes_with_the_command_it_prints(compressed, tmp_path, capsys):
    """A stage stopped part-way says how to go on: the same command with --resume --out DIR (the
    compression's folder, not the stage's), and that finishes the compression."""
    import shlex

    source, _, _ = compressed
    out = tmp_path / "dc"
    command = ["deep-compress", str(source), "--prune-ratio", "0.8", "--epochs", "2", "--out", str(out), *FAST]
    capsys.readouterr()
    assert main([*command, "--stop-after-epochs", "1"]) == 0
    printed = capsys.readouterr().out
    advice = printed.split("continue with the same command and: ", 1)[1].splitlines()[0]
    assert advice == f"--resume --out {shlex.quote(str(out))}"
    assert f"pruning stopped: continue the compression with --resume --out {out}" in printed
    assert not (out / "model.dcz").exists() and (out / "prune" / "last.state.pt").is_file()
    assert main([*command, *shlex.split(advice)]) == 0
    assert (out / "model.dcz").is_file()
    assert torch.load(out / "prune" / "last.state.pt", weights_only=True)["epoch"] == 2
    # no --share-lr: a centroid's gradient sums its cluster's (Eq. 3), so the sharing's lr is the
    # pruning's over the largest layer's mean cluster size
    from cnnzoo.compress.weight_sharing import codebook_of, shared_layers
    from cnnzoo.train.config import read_config

    shared = cnnzoo.load_run(out / "share", device="cpu").model
    sizes = [int(mask.sum()) / len(codebook)
             for codebook, _, mask in map(codebook_of, shared_layers(shared).values())]  # fmt: skip
    assert max(sizes) > 10  # ip1's 80% of 784x300 weights in 32 clusters: far from one
    prune_lr = read_config(out / "prune" / "config.yaml").lr
    assert read_config(out / "share" / "config.yaml").lr == pytest.approx(prune_lr / max(sizes))
    assert f"lr {prune_lr / max(sizes):.3g}" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--prune-ratio", "1.0"], "--prune-ratio must be in [0, 1)"),
    (["--bits-fc", "0"], "--bits-fc must be an integer from 1 to 14"),
    (["--share-lr", "0"], "--share-lr must be positive"),
    (["--share-epochs", "-1"], "--share-epochs must be positive"),
    (["-o", "image_side=32"], "-o does not apply to deep-compress"),
    (["--prune-ratio", "0.9,conv9=0.5"], "has no layer 'conv9'"),
    (["--prune-ratio", "0.9,ip1=x"], "cannot read 'ip1=x'"),
])  # fmt: skip
def test_bad_options_are_one_line_errors_and_write_nothing(compressed, tmp_path, capsys, argv, message):
    source, _, before = compressed
    out = tmp_path / "never"
    capsys.readouterr()
    assert main(["deep-compress", str(source), "--out", str(out), *argv, *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not out.exists() and _tree_digest(source) == before


def test_not_a_run_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["deep-compress", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "run.json" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
