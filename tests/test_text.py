import pytest
import torch
import torch.nn.functional as F

from lmseg_components.data import EncodeTextd
from lmseg_components.text import OpenCLIPTextEncoder, TextFeatureCache, create_text_encoder


def _cos(encoder, a, b):
    pooled = encoder.encode([a, b]).pooled
    return F.cosine_similarity(pooled[0:1], pooled[1:2]).item()


def test_minilm_real_weights_have_sensible_semantics(minilm):
    same = _cos(minilm, "upper left lung infection", "infection in the left upper lung")
    other = _cos(minilm, "upper left lung infection", "lower right lung")
    assert same > other + 0.1
    assert _cos(minilm, "kidney", "renal organ") > _cos(minilm, "kidney", "chest x-ray of the lung")


def test_features_contract(minilm):
    out = minilm.encode(["short", "a somewhat longer clinical description of the lower right lung"])
    assert out.tokens.shape == (2, 32, 384) and out.mask.shape == (2, 32) and out.pooled.shape == (2, 384)
    assert out.mask[0].sum() < out.mask[1].sum()
    assert torch.all(out.tokens[~out.mask] == 0) and torch.all(out.tokens[out.mask].abs().sum(-1) > 0)


def test_encoder_is_frozen(minilm):
    assert all(not p.requires_grad for p in minilm.parameters())
    outer = torch.nn.Sequential(minilm)
    outer.train()
    assert not minilm.training


def test_cache_runs_encoder_once_per_unique_text(minilm, tmp_path):
    cache = TextFeatureCache(minilm, tmp_path)
    first = cache.get(["a", "b", "a"])
    assert cache.encoder_calls == 1
    cache.get(["b", "a"])
    assert cache.encoder_calls == 1
    assert len(list(tmp_path.rglob("*.pt"))) == 2
    fresh = TextFeatureCache(minilm, tmp_path)  # a new process would see the disk entries
    again = fresh.get(["a", "b", "a"])
    assert fresh.encoder_calls == 0
    assert torch.equal(first.tokens, again.tokens) and torch.equal(first.pooled, again.pooled)
    assert torch.allclose(first.pooled[0], minilm.encode("a").pooled[0], atol=1e-6)


def test_cache_is_keyed_by_encoder_identity(tmp_path):
    short = create_text_encoder("minilm", context_length=8)
    long = create_text_encoder("minilm", context_length=16)
    assert short.identity != long.identity
    TextFeatureCache(short, tmp_path).get(["x"])
    cache = TextFeatureCache(long, tmp_path)
    assert cache.get(["x"]).tokens.shape == (1, 16, 384) and cache.encoder_calls == 1


def test_open_clip_local_checkpoint_matches_open_clip_reference(tmp_path):
    import open_clip

    torch.manual_seed(0)
    clip = open_clip.create_model("ViT-B-32", pretrained=None).eval()
    checkpoint = tmp_path / "open_clip_pytorch_model.bin"
    torch.save(clip.state_dict(), checkpoint)
    text = "Bilateral pulmonary infection, two infected areas."

    full = create_text_encoder("open_clip:ViT-B-32", pretrained=str(checkpoint))
    out = full.encode([text])
    ids = open_clip.get_tokenizer("ViT-B-32")([text])
    with torch.no_grad():
        assert torch.allclose(out.pooled, clip.encode_text(ids), atol=1e-5)

    short = create_text_encoder("open_clip:ViT-B-32", pretrained=str(checkpoint), context_length=18)
    assert isinstance(short, OpenCLIPTextEncoder) and short.token_dim == 512
    assert short.identity != full.identity and short.identity.endswith(full.identity.split("|")[-1])
    out18 = short.encode([text])
    assert out18.tokens.shape == (1, 18, 512) and int(out18.mask.sum()) == 10  # start + 8 tokens + end
    assert torch.allclose(out18.tokens, out.tokens[:, :18], atol=1e-5)  # causal: a short text is unaffected
    assert torch.allclose(out18.pooled, out.pooled, atol=1e-5)


def test_factory_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown text encoder"):
        create_text_encoder("bert")
    with pytest.raises(FileNotFoundError, match="config.json"):
        create_text_encoder(f"hf:{tmp_path}")
    with pytest.raises(ValueError, match="context_length"):
        create_text_encoder("open_clip:ViT-B-32", context_length=100)


def test_hf_local_dir_matches_minilm(minilm):
    from lmseg_components.text import minilm_path

    encoder = create_text_encoder(f"hf:{minilm_path()}")
    assert encoder.identity == minilm.identity


def test_transforms(minilm, tmp_path):
    encode = EncodeTextd("text", minilm, cache_dir=tmp_path)
    d = encode({"text": "upper left lung", "image": 0})
    assert d["text_features"].shape == (32, 384) and d["text_features_pooled"].shape == (384,)
    d = encode({"text": ["A computerized tomography of a liver", "A computerized tomography of a spleen"]})
    assert d["text_features"].shape == (2, 32, 384)
    with pytest.raises(TypeError, match="'text' must hold a string"):
        encode({"text": 3})


@pytest.mark.parametrize("name", ["minilm", "open_clip:ViT-B-32"])
def test_text_read_is_the_longest_start_that_fits_and_encodes_the_same(name):
    encoder = create_text_encoder(name, context_length=18)
    short = "Opacity in the left lower zone."
    long = "Bilateral pulmonary infection, two infected areas, upper left lung and lower right lung, " * 3
    assert encoder.text_read(short) == short
    read = encoder.text_read(long)
    words = read.split()
    assert long.startswith(read) and encoder.count_tokens(read) <= 18 < encoder.count_tokens(long)
    assert encoder.count_tokens(" ".join(long.split()[: len(words) + 1])) > 18  # one word more would not fit
    # the truncated prompt and the part read give the encoder the same tokens, up to where the part ends
    n = encoder.count_tokens(read) - 1
    assert torch.equal(encoder.tokenize([long])["input_ids"][0, :n], encoder.tokenize([read])["input_ids"][0, :n])
