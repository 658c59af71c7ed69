"""Pretrained-ViT initialisation from local files: exact conversion, both layouts, clean failures."""
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from nextpatch.config import ModelConfig
from nextpatch.errors import ModelFileError
from nextpatch.model.torch_model import PIXEL_MEAN, PIXEL_STD, PatternNet
from nextpatch.model.weights import IMAGENET_MEAN, IMAGENET_STD, init_encoders

D, HEADS, T, DEPTH, GRID = 32, 2, 8, 3, 4  # checkpoint: width 32, 8-px tokens, 3 blocks, 4x4 token grid


def timm_checkpoint(seed=0, layer_scale=True):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g) * 0.2  # noqa: E731
    sd = {"patch_embed.proj.weight": r(D, 3, T, T), "patch_embed.proj.bias": r(D), "cls_token": r(1, 1, D),
          "pos_embed": r(1, 1 + GRID * GRID, D), "norm.weight": 1 + r(D), "norm.bias": r(D)}
    for i in range(DEPTH):
        b = f"blocks.{i}."
        sd |= {b + "norm1.weight": 1 + r(D), b + "norm1.bias": r(D), b + "attn.qkv.weight": r(3 * D, D),
               b + "attn.qkv.bias": r(3 * D), b + "attn.proj.weight": r(D, D), b + "attn.proj.bias": r(D),
               b + "norm2.weight": 1 + r(D), b + "norm2.bias": r(D), b + "mlp.fc1.weight": r(2 * D, D),
               b + "mlp.fc1.bias": r(2 * D), b + "mlp.fc2.weight": r(D, 2 * D), b + "mlp.fc2.bias": r(D)}
        if layer_scale:
            sd |= {b + "ls1.gamma": r(D), b + "ls2.gamma": r(D)}
    return sd


def reference_forward(sd, img, depth):
    """timm's ViT forward (patch tokens only, no class token), written out independently."""
    x = (img - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    x = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=T)
    x = x.flatten(2).transpose(1, 2) + sd["pos_embed"][:, 1:]
    for i in range(depth):
        b = f"blocks.{i}."
        h = F.layer_norm(x, (D,), sd[b + "norm1.weight"], sd[b + "norm1.bias"], 1e-6)
        q, k, v = F.linear(h, sd[b + "attn.qkv.weight"], sd[b + "attn.qkv.bias"]).view(
            x.shape[0], x.shape[1], 3, HEADS, D // HEADS).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(x.shape)
        x = x + sd.get(b + "ls1.gamma", 1) * F.linear(a, sd[b + "attn.proj.weight"], sd[b + "attn.proj.bias"])
        h = F.layer_norm(x, (D,), sd[b + "norm2.weight"], sd[b + "norm2.bias"], 1e-6)
        h = F.linear(F.gelu(F.linear(h, sd[b + "mlp.fc1.weight"], sd[b + "mlp.fc1.bias"])),
                     sd[b + "mlp.fc2.weight"], sd[b + "mlp.fc2.bias"])
        x = x + sd.get(b + "ls2.gamma", 1) * h
    return F.layer_norm(x, (D,), sd["norm.weight"], sd["norm.bias"], 1e-6)


def to_hf_dinov2(sd):
    out = {"embeddings.patch_embeddings.projection.weight": sd["patch_embed.proj.weight"],
           "embeddings.patch_embeddings.projection.bias": sd["patch_embed.proj.bias"],
           "embeddings.position_embeddings": sd["pos_embed"], "embeddings.cls_token": sd["cls_token"],
           "embeddings.mask_token": torch.zeros(1, D), "layernorm.weight": sd["norm.weight"],
           "layernorm.bias": sd["norm.bias"]}
    for i in range(DEPTH):
        b, h = f"blocks.{i}.", f"encoder.layer.{i}."
        for kind in ("weight", "bias"):
            for n, part in zip(("query", "key", "value"), sd[b + f"attn.qkv.{kind}"].chunk(3)):
                out[h + f"attention.attention.{n}.{kind}"] = part
            out[h + f"attention.output.dense.{kind}"] = sd[b + f"attn.proj.{kind}"]
            for name in ("norm1", "norm2", "mlp.fc1", "mlp.fc2"):
                out[h + f"{name}.{kind}"] = sd[b + f"{name}.{kind}"]
        out[h + "layer_scale1.lambda1"] = sd[b + "ls1.gamma"]
        out[h + "layer_scale2.lambda1"] = sd[b + "ls2.gamma"]
    return out


def small_net(**kw):
    # one patch of 32 px = 4 x 4 tokens of 8 px: the checkpoint's own grid, so no resizing
    cfg = dict(image_size=96, patch_size=32, token_size=T, width=D, heads=HEADS, mlp_ratio=2.0,
               encoder_depth=2, decoder_depth=1, comparator_depth=2) | kw
    return PatternNet(ModelConfig(**cfg))


def our_encoder_output(net, encoder, patch_img):
    tokens = net.patchify(F.pad(patch_img, (0, 64, 0, 64)))[:, :1]  # patch 0 of a 96 x 96 image
    return encoder(tokens[:, 0])  # no patch-position term: the pretrained encoder alone


@pytest.mark.parametrize("layout", ["timm-safetensors", "timm-pth", "dinov2-hf"])
def test_checkpoint_loads_exactly(tmp_path, layout):
    sd = timm_checkpoint()
    if layout == "timm-safetensors":
        path = tmp_path / "vit.safetensors"
        save_file(sd, str(path))
    elif layout == "timm-pth":
        path = tmp_path / "vit.pth"
        torch.save({"model": sd}, path)
    else:
        path = tmp_path / "dinov2.safetensors"
        save_file({"dinov2." + k: v for k, v in to_hf_dinov2(sd).items()}, str(path))
    net = small_net()
    summary = init_encoders(net, path)
    assert summary["encoders"] == ["comparator", "encoder1", "encoder2"]
    img = torch.rand(2, 3, 32, 32)
    want = reference_forward(sd, img, depth=2)
    for enc in (net.encoder1, net.encoder2, net.comparator):
        got = our_encoder_output(net, enc, img)
        assert (got - want).abs().max() < 1e-4
    assert PIXEL_MEAN == 0.5 and PIXEL_STD == 0.25  # the folding above assumes these


def test_position_embedding_resized_for_other_grids(tmp_path):
    path = tmp_path / "vit.safetensors"
    save_file(timm_checkpoint(), str(path))
    net = small_net(image_size=48, patch_size=16)  # 2 x 2 tokens per patch instead of 4 x 4
    init_encoders(net, path)
    assert net.encoder1.pos_embed.shape == (1, 4, D)


@pytest.mark.parametrize("change, message", [
    (dict(width=64, heads=2), "width is 32 but the model's is 64"),
    (dict(token_size=4, patch_size=16, image_size=48), "tokens are 8 px"),
    (dict(encoder_depth=4), "has 3 blocks but the model needs 4"),
    (dict(mlp_ratio=4.0), "mlp"),
])
def test_mismatched_checkpoint_fails_cleanly(tmp_path, change, message):
    path = tmp_path / "vit.safetensors"
    save_file(timm_checkpoint(), str(path))
    net = small_net(**change)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(ModelFileError, match=message):
        init_encoders(net, path)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # nothing half-loaded


def test_truncated_and_missing_files(tmp_path):
    path = tmp_path / "vit.safetensors"
    save_file(timm_checkpoint(), str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="vit.safetensors"):
        init_encoders(small_net(), path)
    with pytest.raises(ModelFileError, match="not found"):
        init_encoders(small_net(), tmp_path / "nope.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(ModelFileError, match="junk.pth"):
        init_encoders(small_net(), junk)
