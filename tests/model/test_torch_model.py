"""Shapes and wiring of the paper's parts: encoders, decoder, Siamese comparator, bi-directional fusion."""
import pytest
import torch

from nextpatch.config import DIRECTIONS, ModelConfig
from nextpatch.errors import ConfigError
from nextpatch.model.torch_model import PatternNet, contrastive_loss, native_bfloat16, triplet_table
from nextpatch.model.vit import ViTEncoder

SMALL = dict(image_size=64, patch_size=16, token_size=4, width=32, heads=2, comparator_dim=16)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return PatternNet(ModelConfig(**SMALL)).eval()


def test_vit_encoder_shapes():
    enc = ViTEncoder(token_dim=48, num_tokens=16, dim=32, depth=2, heads=4)
    assert enc(torch.rand(5, 16, 48)).shape == (5, 16, 32)


def test_vit_encoder_concatenates_the_named_blocks():
    torch.manual_seed(0)
    enc = ViTEncoder(token_dim=48, num_tokens=16, dim=32, depth=3, heads=4, class_token=True).eval()
    x = torch.rand(5, 16, 48)
    with torch.no_grad():
        last, both = enc(x), enc(x, layers=(2, 3))
        shallow = ViTEncoder(token_dim=48, num_tokens=16, dim=32, depth=2, heads=4, class_token=True).eval()
        shallow.load_state_dict({k: v for k, v in enc.state_dict().items() if not k.startswith("blocks.2.")})
        second = shallow(x)
    assert both.shape == (5, 16, 64)
    assert torch.allclose(both[..., 32:], last, atol=1e-6)  # block 3's part is the plain output
    assert torch.allclose(both[..., :32], second, atol=1e-6)  # block 2's part is a 2-block encoder's output
    assert torch.allclose(enc(x, layers=(3,)), last, atol=1e-6)


def test_patchify_roundtrip_and_layout(net):
    imgs = torch.rand(2, 3, 64, 64)
    tokens = net.patchify(imgs)
    assert tokens.shape == (2, 16, 16, 4 * 4 * 3)  # (N, P, n, Dt): 4x4 grid, 4x4 tokens of 4x4 px
    assert torch.allclose(net.unpatchify(tokens), imgs, atol=1e-6)
    # patch 5 is grid cell (1, 1): pixels [16:32, 16:32]; its token 0 is the top-left 4x4 block
    expected = (imgs[0, :, 16:20, 16:20].permute(1, 2, 0).reshape(-1) - 0.5) / 0.25
    assert torch.allclose(tokens[0, 5, 0], expected, atol=1e-6)


def test_triplets_are_consecutive_patches():
    table = triplet_table(4, DIRECTIONS)
    assert len(table) == 4 * 4 * 2  # each direction: G rows x (G - 2) targets
    for far, near, target, direction in table.tolist():
        (fi, fj), (ni, nj), (ti, tj) = divmod(far, 4), divmod(near, 4), divmod(target, 4)
        assert (ni - fi, nj - fj) == (ti - ni, tj - nj)  # equal steps: a straight line of three patches
        assert abs(ti - ni) + abs(tj - nj) == 1
        if DIRECTIONS[direction] == "right":
            assert tj == nj + 1  # forward pass along a row predicts the patch to the right


def test_generator_and_comparator_shapes(net):
    imgs = torch.rand(2, 3, 64, 64)
    tokens = net.patchify(imgs)
    f1, f2 = net.forward_encoders(tokens)
    assert f1.shape == f2.shape == (2, 16, 16, 32)
    which = torch.tensor([[0, 3, 5], [1, 2, 7]])
    pred = net.forward_decoder(f1, f2, which)
    assert pred.shape == (2, 3, 16, 48)  # predicted pixels of 3 target patches
    feats = net.forward_comparator(pred, net.triplets[which, 2])
    assert feats.shape == (2, 3, 16, 16)
    assert torch.allclose(feats.norm(dim=-1), torch.ones(2, 3, 16), atol=1e-5)


def test_comparator_is_siamese(net):
    """One encoder with shared weights: identical patches have distance 0, whatever they are."""
    tokens = net.patchify(torch.rand(1, 3, 64, 64))[:, :4]
    where = torch.arange(4).unsqueeze(0)
    d = net.distance(tokens, tokens.clone(), where)
    assert d.abs().max() < 1e-5
    other = net.patchify(torch.rand(1, 3, 64, 64))[:, :4]
    assert net.distance(tokens, other, where).mean() > 1e-3


def test_prediction_depends_on_context(net):
    """The decoder reads Encoder1/Encoder2 features: changing a context patch changes the prediction."""
    imgs = torch.rand(1, 3, 64, 64)
    far, near, target, _ = net.triplets[0].tolist()
    which = torch.tensor([[0]])
    base = net.forward_decoder(*net.forward_encoders(net.patchify(imgs)), which)
    for ctx in (far, near):
        changed = imgs.clone()
        i, j = divmod(ctx, 4)
        changed[:, :, i * 16:(i + 1) * 16, j * 16:(j + 1) * 16] = torch.rand(1, 3, 16, 16)
        other = net.forward_decoder(*net.forward_encoders(net.patchify(changed)), which)
        assert (other - base).abs().max() > 1e-4


def test_bidirectional_fusion_covers_borders():
    cfg = ModelConfig(**SMALL, directions=("right",))
    forward_only = PatternNet(cfg)
    dist = torch.ones(1, forward_only.num_triplets, 16)
    fused = forward_only.token_grid(forward_only.fuse(dist))  # (1, 16, 16) token map
    assert fused[0, :, :8].eq(0).all()  # the first two patch columns are never a target going right
    both = PatternNet(ModelConfig(**SMALL))
    fused = both.token_grid(both.fuse(torch.ones(1, both.num_triplets, 16)))
    assert fused.eq(1).all()  # every token, corners included, is predicted from some direction


def test_fusion_min_ignores_a_bad_direction():
    net = PatternNet(ModelConfig(**SMALL, fusion="min"))
    dist = torch.full((1, net.num_triplets, 16), 0.1)
    dist[0, net.triplets[:, 3] == DIRECTIONS.index("right")] = 5.0  # one direction's context was defective
    assert torch.allclose(net.fuse(dist), torch.full((1, 16, 16), 0.1))
    mean = PatternNet(ModelConfig(**SMALL, fusion="mean"))
    assert mean.fuse(dist).max() > 0.1


def test_fusion_max_takes_the_worst_direction():
    net = PatternNet(ModelConfig(**SMALL, fusion="max"))
    dist = torch.full((1, net.num_triplets, 16), 0.1)
    dist[0, net.triplets[:, 3] == DIRECTIONS.index("right")] = 5.0
    fused = net.token_grid(net.fuse(dist))[0]  # (16, 16) tokens: 4 patches of 4 tokens a side
    assert fused[:, 8:].eq(5.0).all()  # patch columns 2-3 are targets going right
    assert fused[:, :8].eq(0.1).all()  # columns 0-1 only going left (or along columns)


def test_colour_term_adds_the_scaled_mean_colour_difference():
    torch.manual_seed(0)
    net = PatternNet(ModelConfig(**SMALL, color_weight=0.5)).eval()
    imgs = torch.rand(4, 3, 64, 64)
    scale = net.fit_color_scale(imgs)
    assert float(net.color_scale) == scale
    with torch.no_grad():
        tokens = net.patchify(imgs)
        pred = net.predict_triplets(tokens)
        target = net.triplets[:, 2]
        real = tokens[:, target]
        colour = net.color_distance(pred, real)
        siamese = net.distance(pred, real, target.expand(4, -1))
        # fitted so that both terms spread alike on these (normal) images
        assert scale == pytest.approx(float(siamese.std() / colour.std()), rel=1e-4)
        assert torch.allclose(net.triplet_distances(tokens, pred), siamese + 0.5 * scale * colour, atol=1e-5)
        # a uniform shift of every channel by d is a colour distance of d * sqrt(3), whatever the texture
        assert torch.allclose(net.color_distance(real, real + 0.4), torch.full(colour.shape, 0.4 * 3 ** 0.5), atol=1e-5)
    # without a colour term the model has no scale to fit
    plain = PatternNet(ModelConfig(**SMALL))
    assert plain.fit_color_scale(imgs) == 1.0 and "color_scale" not in plain.state_dict()


def test_forward_outputs(net):
    img = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        amap, expected = net(img)
        # forward encodes real patches and predictions in one Encoder3 pass: same map as the per-triplet
        # distances the training uses
        tokens = net.patchify(img)
        pred = net.predict_triplets(tokens)
        target = net.triplets[:, 2]
        dist = net.distance(pred, tokens[:, target], target.expand(2, -1))
        assert torch.allclose(amap, net.smooth(net.token_grid(net.fuse(dist))), atol=1e-5)
    assert amap.shape == (2, 64, 64) and expected.shape == (2, 3, 64, 64)
    assert expected.min() >= 0 and expected.max() <= 1


def test_token_labels_and_stage_losses(net):
    mask = torch.zeros(2, 1, 64, 64)
    mask[:, :, :4, :4] = 1  # exactly token 0 of patch 0
    labels = net.token_labels(mask)
    assert labels.shape == (2, 16, 16) and labels[:, 0, 0].eq(1).all() and labels.sum() == 2

    net.train()
    imgs = torch.rand(2, 3, 64, 64)
    which = net.sample_triplets(2, 8)
    assert which.shape == (2, 8) and all(len(set(row.tolist())) == 8 for row in which)
    net.generator_loss(imgs, which).backward()
    assert net.encoder1.patch_embed.weight.grad is not None and net.decoder_pred.weight.grad is not None
    assert net.comparator.patch_embed.weight.grad is None  # stage 1 touches the generator only
    net.zero_grad(set_to_none=True)

    with torch.no_grad():
        pred = net.predict_triplets(net.patchify(imgs))[torch.arange(2).unsqueeze(1), which]
    net.comparator_loss(pred, net.patchify(imgs), net.token_labels(mask), which).backward()
    assert net.comparator.patch_embed.weight.grad is not None
    assert net.encoder1.patch_embed.weight.grad is None  # stage 2 touches the comparator only
    net.zero_grad(set_to_none=True)
    net.eval()


def test_contrastive_loss_pulls_normals_and_pushes_defects(net):
    """With identical predicted and real patches, a clean batch costs ~0 and a defect costs ~margin^2."""
    imgs = torch.rand(1, 3, 64, 64)
    which = torch.arange(net.num_triplets).unsqueeze(0)
    tokens = net.patchify(imgs)
    pred = tokens[:, net.triplets[:, 2]]
    none, full = torch.zeros(1, 16, 16), torch.ones(1, 16, 16)
    assert net.comparator_loss(pred, tokens, none, which).item() < 1e-6
    assert net.comparator_loss(pred, tokens, full, which, margin=1.0).item() == pytest.approx(1.0, abs=1e-4)


def test_contrastive_margin_stops_the_push_once_a_defect_is_far_enough():
    """A defect token at or beyond the margin costs nothing; nearer, (margin - distance)^2; normals cost d^2.

    The default preset's heads train with margin 0.25: they stop pushing a synthetic defect once it is
    that far from its prediction, instead of driving every defect to orthogonal features.
    """
    dist = torch.tensor([0.30, 0.25, 0.10, 0.20])
    label = torch.tensor([1.0, 1.0, 1.0, 0.0])
    push = ((0.25 - 0.10) ** 2) / 3  # only the defect nearer than the margin, averaged over the 3 defects
    assert contrastive_loss(dist, label, 0.25).item() == pytest.approx(push + 0.20 ** 2)
    assert contrastive_loss(dist, label, 1.0).item() == pytest.approx((0.7 ** 2 + 0.75 ** 2 + 0.9 ** 2) / 3 + 0.04)


def test_patch_transforms_keep_pairs_aligned(net):
    """Turning/mirroring patches in token space equals turning/mirroring the patch's pixels."""
    imgs = torch.rand(2, 3, 64, 64)
    tokens = net.patchify(imgs)
    rot, flip = torch.tensor([1, 3]), torch.tensor([False, True])
    moved = net.unpatchify(net.transform_patches(tokens, rot, flip))
    for i in range(2):
        patch = imgs[i, :, 16:32, 32:48]  # grid cell (1, 2)
        want = torch.rot90(patch.flip(-1) if flip[i] else patch, int(rot[i]), (1, 2))
        assert torch.allclose(moved[i, :, 16:32, 32:48], want, atol=1e-6)
    labels = torch.arange(16.).expand(2, 16, 16)
    assert net.transform_patches(labels, rot, flip).shape == (2, 16, 16)


def test_config_validation():
    with pytest.raises(ConfigError):
        ModelConfig(image_size=100, patch_size=32).validate()
    with pytest.raises(ConfigError):
        ModelConfig(directions=("sideways",)).validate()
    with pytest.raises(ConfigError, match="fusion"):
        ModelConfig(fusion="median").validate()
    with pytest.raises(ConfigError, match="color_weight"):
        ModelConfig(color_weight=-1.0).validate()


def test_comparator_with_its_own_width_class_token_and_colour():
    cfg = ModelConfig(**SMALL, comparator_width=48, comparator_heads=4, comparator_mlp_ratio=4.0,
                      comparator_class_token=True, comparator_position=False, comparator_color=True)
    torch.manual_seed(0)
    net = PatternNet(cfg).eval()
    assert net.comparator.pos_embed.shape == (1, 1 + 16, 48)  # class token's row + 4 x 4 tokens
    img = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        amap, expected = net(img)
        tokens = net.patchify(img)
        feats = net.encode_comparator(tokens, torch.arange(16).expand(2, -1))
    assert amap.shape == (2, 64, 64) and expected.shape == (2, 3, 64, 64)
    assert feats.shape == (2, 16, 16, 48 + 6)
    first = (img[0, :, :4, :4] - 0.5) / 0.25  # patch 0, token 0: 4 x 4 px
    assert torch.allclose(feats[0, 0, 0, 48:51], first.mean((1, 2)), atol=1e-5)
    assert torch.allclose(feats[0, 0, 0, 51:], first.reshape(3, -1).std(1), atol=1e-5)
    # a colour shift of +0.1 (0.4 in normalised units, less where clipped) moves the colour means
    with torch.no_grad():
        shifted = net.encode_comparator(net.patchify((img + 0.1).clamp(0, 1)), torch.arange(16).expand(2, -1))
    assert (shifted[..., 48:51] - feats[..., 48:51]).abs().mean() > 0.2


def test_comparator_position_needs_equal_widths():
    with pytest.raises(ConfigError, match="comparator_position"):
        ModelConfig(**SMALL, comparator_width=48, comparator_heads=4).validate()


def test_head_ensemble_distance_is_the_mean_of_its_heads():
    torch.manual_seed(0)
    net = PatternNet(ModelConfig(**SMALL, head_ensemble=3)).eval()
    assert net.comparator_head.out_features == 3 * 16
    pred, real = torch.rand(2, 5, 16, 48), torch.rand(2, 5, 16, 48)
    where = torch.arange(5).expand(2, -1)
    with torch.no_grad():
        dist = net.distance(pred, real, where)
        a, b = net.encode_comparator(pred, where), net.encode_comparator(real, where)
        per_head = []
        for k in range(3):  # each head alone: its rows of the stacked Linear, normalised on their own
            w, bias = net.comparator_head.weight[16 * k:16 * (k + 1)], net.comparator_head.bias[16 * k:16 * (k + 1)]
            fa = torch.nn.functional.normalize(a @ w.T + bias, dim=-1)
            fb = torch.nn.functional.normalize(b @ w.T + bias, dim=-1)
            per_head.append(1 - (fa * fb).sum(-1))
    assert dist.shape == (2, 5, 16)
    assert torch.allclose(dist, torch.stack(per_head).mean(0), atol=1e-5)
    assert not torch.allclose(per_head[0], per_head[1])  # the heads differ
    with pytest.raises(ConfigError, match="head_ensemble"):
        ModelConfig(**SMALL, head_ensemble=0).validate()


def test_bfloat16_comparator_agrees_with_float32():
    torch.manual_seed(0)
    net32 = PatternNet(ModelConfig(**SMALL)).eval()
    net16 = PatternNet(ModelConfig(**SMALL, comparator_precision="bfloat16")).eval()
    net16.load_state_dict(net32.state_dict())
    pred, real = torch.rand(2, 5, 16, 48), torch.rand(2, 5, 16, 48)
    where = torch.arange(5).expand(2, -1)
    with torch.no_grad():
        f32, f16 = net32.encode_comparator(real, where), net16.encode_comparator(real, where)
        d32, d16 = net32.distance(pred, real, where), net16.distance(pred, real, where)
    assert f16.dtype == torch.float32  # features come back in float32 whatever Encoder3 computed in
    assert not torch.equal(f32, f16)   # bfloat16 arithmetic really ran ...
    assert (f16 - f32).abs().max() < 0.1 * f32.abs().max()  # ... and agrees to bfloat16's precision
    assert (d16 - d32).abs().max() < 0.02
    assert torch.corrcoef(torch.stack([d32.flatten(), d16.flatten()]))[0, 1] > 0.99
    # "auto" is bfloat16 exactly where this device computes it natively
    net_auto = PatternNet(ModelConfig(**SMALL, comparator_precision="auto")).eval()
    net_auto.load_state_dict(net32.state_dict())
    with torch.no_grad():
        d_auto = net_auto.distance(pred, real, where)
    assert torch.equal(d_auto, d16 if native_bfloat16(torch.device("cpu")) else d32)
    with pytest.raises(ConfigError, match="comparator_precision"):
        ModelConfig(**SMALL, comparator_precision="fp8").validate()


def test_bfloat16_inference_casts_weights_once_and_follows_their_changes():
    """Without gradients the bfloat16 comparator and memory search read copies of their weights cast once:
    the same numbers as autocast casting them per call, and new ones as soon as a weight or the bank changes."""
    torch.manual_seed(0)
    cfg = ModelConfig(**dict(SMALL, comparator_position=False, comparator_view="image", comparator_depth=2,
                             memory_layers=(2,), comparator_precision="bfloat16"))
    net = PatternNet(cfg).eval()
    net.fit_memory(torch.rand(4, 3, 64, 64), seed=0)
    tokens = net.patchify(torch.rand(2, 3, 64, 64))

    def both() -> tuple[torch.Tensor, torch.Tensor]:
        real = net.encode_real_image(tokens)
        return real[1], net.memory_map(tokens, real[1])

    with torch.no_grad():
        cached = both()
    with torch.enable_grad():  # gradients on: no copies, autocast casts on every call
        per_call = [t.detach() for t in both()]
    assert all(torch.equal(a, b) for a, b in zip(cached, per_call))
    with torch.no_grad():
        net.comparator.blocks[0].mlp.fc1.weight.mul_(2)  # written in place, as an optimiser or load_state_dict does
        net.memory_bank = net.memory_bank[: len(net.memory_bank) // 2].clone()  # a new bank, as fit_memory sets
        changed = both()
    with torch.enable_grad():
        expected = [t.detach() for t in both()]
    assert all(torch.equal(a, b) for a, b in zip(changed, expected))
    assert not torch.equal(changed[0], cached[0]) and not torch.equal(changed[1], cached[1])


def test_image_view_encodes_whole_images():
    """comparator_view = "image": Encoder3 reads the real image and, per direction, the image it expected;
    a token's distance then depends on its neighbourhood, and a perfect prediction still gives 0."""
    torch.manual_seed(0)
    cfg = dict(SMALL, directions=("right", "left"), comparator_position=False)
    net = PatternNet(ModelConfig(**cfg, comparator_view="image")).eval()
    assert net.comparator.pos_embed.shape[1] == 16 * 16  # (S / t)^2 tokens, not one patch's 4 x 4
    imgs = torch.rand(2, 3, 64, 64)
    tokens = net.patchify(imgs)
    in_order = net.image_tokens(tokens)  # tokens in image order are the image's t x t blocks, row-major
    assert torch.allclose(in_order[0, 16 * 5 + 6], (imgs[0, :, 20:24, 24:28].permute(1, 2, 0).reshape(-1) - 0.5) / 0.25)
    assert torch.equal(net.patch_tokens(in_order), tokens)
    assert torch.equal(in_order[:, net.image_token_index()], tokens)

    with torch.no_grad():
        pred = net.predict_triplets(tokens)
        views = net.patch_tokens(net.expected_views(tokens, pred))  # (N, R, P, n, Dt)
        for t in (0, net.num_triplets - 1):  # each triplet's prediction sits in its direction's image
            r, target = int(net.triplet_view[t]), int(net.triplets[t, 2])
            assert torch.allclose(views[:, r, target], pred[:, t].clamp(-2, 2))
        reached = set(net.triplets[net.triplet_view == 0, 2].tolist())
        untouched = [p for p in range(16) if p not in reached]  # "right" cannot reach the first 2 columns
        assert untouched == [0, 1, 4, 5, 8, 9, 12, 13] and torch.equal(views[:, 0, untouched], tokens[:, untouched])

        dist = net.siamese_distances(tokens, pred)
        assert dist.shape == (2, net.num_triplets, 16)
        perfect = tokens[:, net.triplets[:, 2]]  # the generator predicts every patch exactly
        assert net.siamese_distances(tokens, perfect).abs().max() < 1e-5

        # context: a change in the image's corner moves a distance far from it in the image view only
        t = int(((net.triplets[:, 2] == 15) & (net.triplet_view == 0)).nonzero()[0])  # bottom-right target
        changed = imgs.clone()
        changed[:, :, :16, :16] = torch.rand(2, 3, 16, 16)
        moved = net.siamese_distances(net.patchify(changed), pred)[:, t] - dist[:, t]
        assert moved.abs().max() > 1e-4
        patch_view = PatternNet(ModelConfig(**cfg)).eval()
        before = patch_view.siamese_distances(tokens, pred)[:, t]
        after = patch_view.siamese_distances(net.patchify(changed), pred)[:, t]
        assert torch.allclose(before, after, atol=1e-6)

    with pytest.raises(ConfigError, match="comparator_position"):
        ModelConfig(**SMALL, comparator_view="image").validate()  # the patch grid position makes no sense there
    with pytest.raises(ConfigError, match="comparator_view"):
        ModelConfig(**SMALL, comparator_view="tile").validate()


def test_memory_of_normal_is_zero_on_training_tokens_and_far_on_new_ones():
    """The memory bank holds training-token features: a training image is at distance ~0 everywhere,
    a region unlike any training token is far; the bank is bounded by memory_size and saved with the weights."""
    torch.manual_seed(0)
    cfg = ModelConfig(**dict(SMALL, comparator_position=False, comparator_view="image", comparator_depth=2,
                             memory_layers=(3,), memory_size=10_000))
    net = PatternNet(cfg).eval()
    assert len(net.comparator.blocks) == 3  # the memory reads a block beyond the comparison's two
    stripes = torch.zeros(6, 3, 64, 64)
    stripes[:, :, :, ::4] = 1.0
    stripes += 0.02 * torch.rand_like(stripes)
    assert net.fit_memory(stripes, seed=0) == min(6 * 256, 10_000)
    with torch.no_grad():
        seen = net.memory_map(net.patchify(stripes[:1]))
        odd = stripes[:1].clone()
        odd[:, :, 20:36, 20:36] = torch.rand(1, 3, 16, 16)
        new = net.memory_map(net.patchify(odd))
    assert seen.max() < 1e-4
    assert new[0, 6:8, 6:8].min() > 50 * (seen.max() + 1e-4) and new[0, 0, 12] < 1e-3

    small = PatternNet(ModelConfig(**dict(cfg.__dict__, memory_size=64))).eval()
    small.load_state_dict({k: v for k, v in net.state_dict().items() if k != "memory_bank"}, strict=False)
    assert small.fit_memory(stripes, seed=0) == 64  # the coreset bounds the bank, whatever the training set

    reloaded = PatternNet(cfg).eval()  # a fresh net takes the saved bank's length from the state dict
    reloaded.load_state_dict(net.state_dict())
    assert torch.equal(reloaded.memory_bank, net.memory_bank)


def test_memory_fit_chooses_among_a_bounded_pool_of_tokens(monkeypatch):
    """However many training tokens, the coreset sees at most POOL_PER_ROW * memory_size of them (fit time and
    memory bounded); the bank still covers the training texture and not a region unlike it."""
    from nextpatch.model import maps, memory

    torch.manual_seed(0)
    cfg = ModelConfig(**dict(SMALL, comparator_position=False, comparator_view="image", comparator_depth=2,
                             memory_layers=(3,), memory_size=16))
    net = PatternNet(cfg).eval()
    stripes = torch.zeros(12, 3, 64, 64)
    stripes[:, :, :, ::4] = 1.0
    stripes += 0.02 * torch.rand_like(stripes)
    seen_rows = []
    monkeypatch.setattr(maps, "build_bank", lambda feats, size, seed: (seen_rows.append(len(feats)),
                                                                        memory.build_bank(feats, size, seed=seed))[1])
    assert net.fit_memory(stripes, batch_size=5, seed=0) == 16
    assert seen_rows == [memory.POOL_PER_ROW * 16] < [12 * 256]
    pool = memory.candidate_pool(12 * 256, 16, seed=0)
    assert len(set(pool.tolist())) == len(pool) == 128 and bool((pool[1:] > pool[:-1]).all())
    assert memory.candidate_pool(100, 16) is None  # few tokens: every one is a candidate
    with torch.no_grad():
        seen = net.memory_map(net.patchify(stripes[:1]))
        odd = stripes[:1].clone()
        odd[:, :, 20:36, 20:36] = torch.rand(1, 3, 16, 16)
        new = net.memory_map(net.patchify(odd))
    assert new[0, 6:8, 6:8].min() > 5 * seen.median()


def test_greedy_coreset_keeps_a_rare_variant():
    from nextpatch.model.memory import greedy_coreset

    common = torch.randn(1, 32).repeat(500, 1) + 0.01 * torch.randn(500, 32)
    rare = torch.randn(1, 32) * 3
    chosen = greedy_coreset(torch.cat([common, rare]), 5, seed=0)
    assert 500 in chosen.tolist() and len(set(chosen.tolist())) == 5
