import numpy as np
import pytest
import torch
from PIL import Image

from madf.common.errors import InputError
from madf.data.images import InpaintingDataset, ResumableSampler
from madf.data.masks import BUCKETS, MaskFolder, bucket_of, eval_masks, free_form_mask, mask_digest
from madf.inpaint import imaging

# sha256 prefixes of eval_masks(64, 64, 1, seed=0): the evaluation set must be the same on every machine.
PINNED = ["5493d4aea63fb94d", "28b870be41605add", "c25d518be34a9c54", "16f04d08d68c8da7", "7431ec8a5d251dab",
          "664d8c97993289ed"]


def test_eval_masks_are_pinned():
    masks = eval_masks(64, 64, 1, seed=0)
    assert [mask_digest(m) for _, m in masks] == PINNED
    assert [mask_digest(m) for _, m in eval_masks(64, 64, 1, seed=1)] != PINNED


@pytest.mark.parametrize("bucket", BUCKETS, ids=lambda b: f"{b[0]}-{b[1]}")
def test_bucket_targeting(bucket):
    for seed in range(4):
        mask = free_form_mask(96, 128, seed=seed, bucket=bucket)
        assert mask.dtype == bool and mask.shape == (96, 128)
        assert bucket[0] < mask.mean() <= bucket[1]
        assert bucket_of(float(mask.mean())) == bucket


def test_free_form_is_seeded():
    assert np.array_equal(free_form_mask(64, 64, seed=3), free_form_mask(64, 64, seed=3))
    assert not np.array_equal(free_form_mask(64, 64, seed=3), free_form_mask(64, 64, seed=4))


def _mask_folder(tmp_path, white_is_hole=True, n=4):
    folder = tmp_path / "masks"
    for i in range(n):
        hole = free_form_mask(80, 80, seed=i, bucket=BUCKETS[i % 3])
        pixels = hole if white_is_hole else ~hole
        imaging.write_png(folder / f"{i}.png", (pixels * 255).astype(np.uint8))
    return folder


def test_mask_folder_augmentation_stays_binary_and_seeded(tmp_path):
    folder = MaskFolder(_mask_folder(tmp_path))
    a = folder.sample(64, 64, np.random.default_rng(5))
    b = folder.sample(64, 64, np.random.default_rng(5))
    assert a.dtype == bool and a.shape == (64, 64) and np.array_equal(a, b)
    big = folder.sample(96, 128, np.random.default_rng(1))          # smaller source: nearest upscale, still binary
    assert big.shape == (96, 128) and big.dtype == bool
    ratios = {round(float(folder.sample(64, 64, np.random.default_rng(s), index=0).mean()), 3) for s in range(6)}
    assert len(ratios) > 1                                            # flips/rotation/dilation/crop vary it


def test_mask_folder_polarity_check(tmp_path):
    inverted = _mask_folder(tmp_path, white_is_hole=False)
    with pytest.raises(InputError, match="look inverted; read them with --invert-masks"):
        MaskFolder(inverted)
    assert MaskFolder(inverted, invert=True).sample(32, 32, np.random.default_rng(0)).mean() < 0.6


def _photo_tree(tmp_path):
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)).save(root / "a.jpg")
    Image.fromarray(rng.integers(0, 256, (60, 40), dtype=np.uint8)).save(root / "sub" / "gray.png")
    Image.fromarray(rng.integers(0, 256, (40, 40, 4), dtype=np.uint8), "RGBA").save(root / "sub" / "alpha.webp")
    (root / "sub" / "broken.png").write_bytes(b"\x89PNG not really")
    return root


def test_dataset_converts_and_skips_broken_files(tmp_path, caplog):
    ds = InpaintingDataset(_photo_tree(tmp_path), size=32)
    assert len(ds) == 4
    with caplog.at_level("WARNING", logger="madf"):
        items = [ds.at(0, i) for i in range(len(ds))]
    assert "skipping training image" in caplog.text and "unreadable" in caplog.text and "broken.png" in caplog.text
    for image, known in items:
        assert image.shape == (3, 32, 32) and 0 <= image.min() and image.max() <= 1
        assert known.shape == (1, 32, 32) and set(known.unique().tolist()) <= {0.0, 1.0}
    again = ds.at(0, 2)
    assert all((x == y).all() for x, y in zip(items[2], again))      # (epoch, index) fixes every random choice
    assert not (ds.at(1, 2)[0] == again[0]).all()


def test_dataset_cache_changes_nothing_but_the_decoding(tmp_path, monkeypatch):
    root = _photo_tree(tmp_path)
    cached, uncached = InpaintingDataset(root, size=32), InpaintingDataset(root, size=32, cache_bytes=0)
    first = [cached.at(0, i) for i in range(4)]
    assert len(cached._cache) == 3 and not uncached._cache              # the broken file is never cached
    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda *a, **k: opened.append(a[0]) or real_open(*a, **k))
    again = [cached.at(0, i) for i in range(4)]
    assert [p.name for p in opened] == ["broken.png"]                  # the rest came from memory
    for (x, m), (y, n), (z, o) in zip(first, again, [uncached.at(0, i) for i in range(4)]):
        assert torch.equal(x, y) and torch.equal(x, z) and torch.equal(m, n) and torch.equal(m, o)
    small = InpaintingDataset(root, size=32, cache_bytes=40 * 40 * 3)   # room for the 40x40 photo only
    [small.at(0, i) for i in range(4)]
    assert [p.name for p in small._cache] == ["alpha.webp"]


def test_sampler_resumes_exactly_and_splits_ranks():
    full = ResumableSampler(10, 3, seed=1)
    it = iter(full)
    first = [next(it) for _ in range(8)]
    resumed = iter(ResumableSampler(10, 3, seed=1, start_step=5))
    assert [next(resumed) for _ in range(3)] == first[5:8]
    r0, r1 = ResumableSampler(10, 2, seed=1, rank=0, world=2), ResumableSampler(10, 2, seed=1, rank=1, world=2)
    step0 = r0.indices_for_step(0) + r1.indices_for_step(0)
    assert len(set(step0)) == 4                                        # ranks take disjoint slots
    epoch0 = [key for s in range(5) for key in full.indices_for_step(s)][:10]
    assert sorted(i for e, i in epoch0) == list(range(10))            # an epoch is a permutation


def test_madf_data_split_is_fixed(tmp_path):
    from madf.data.assemble import assemble, is_heldout
    split = assemble(tmp_path / "photos")
    assert split["train"] and split["heldout"]
    assert all(is_heldout(p.stem) for p in split["heldout"]) and not any(is_heldout(p.stem) for p in split["train"])
    assert {p.stem for p in split["heldout"]} >= {"skimage-chelsea", "skimage-brick"}


def test_madf_data_manifest_and_perceptual_duplicates(tmp_path):
    from PIL import Image

    from madf.data.assemble import DUPLICATE_BITS, assemble, dhash
    from madf.data.photos import sources
    photos = {p.name: p for p in sources()}
    photo = Image.open(photos["chelsea.png"]).convert("RGB")
    smaller = photo.resize((photo.width // 3, photo.height // 3), Image.BICUBIC)
    assert bin(dhash(photo) ^ dhash(smaller)).count("1") <= DUPLICATE_BITS        # the same picture, another size
    other = Image.open(photos["coffee.png"]).convert("RGB")
    assert bin(dhash(photo) ^ dhash(other)).count("1") > DUPLICATE_BITS
    import json
    assemble(tmp_path / "photos", download=False)
    manifest = json.loads((tmp_path / "photos" / "manifest.json").read_text())
    names = [m["name"] for m in manifest]
    assert len(names) == len(set(names)) and "skimage-chelsea" in names
    for m in manifest:
        assert m["license"] and m["package"] and m["split"] in ("train", "heldout")
        assert (tmp_path / "photos" / m["split"] / f"{m['name']}.png").is_file()


def _rcc(files, compressed=()):
    """A Qt resource file (format version 2) holding ``files`` ({name: bytes}) in one folder "res"."""
    import struct
    import zlib
    names, data, tree = b"", b"", []

    def name(text):
        nonlocal names
        offset = len(names)
        names += struct.pack(">HI", len(text), 0) + text.encode("utf-16-be")
        return offset

    tree.append(struct.pack(">IHII", name(""), 0x2, 1, 1) + bytes(8))               # root: one child, node 1
    tree.append(struct.pack(">IHII", name("res"), 0x2, len(files), 2) + bytes(8))   # res/: children from node 2
    for file_name, payload in files.items():
        flags = 0
        if file_name in compressed:
            payload, flags = struct.pack(">I", len(payload)) + zlib.compress(payload), 0x1
        tree.append(struct.pack(">IHHHI", name(file_name), flags, 0, 0, len(data)) + bytes(8))
        data += struct.pack(">I", len(payload)) + payload
    tree_off = 20
    data_off = tree_off + 22 * len(tree)
    names_off = data_off + len(data)
    return b"qres" + struct.pack(">IIII", 2, tree_off, data_off, names_off) + b"".join(tree) + data + names


def test_qt_resource_files_are_read_without_qt(tmp_path):
    from madf.data.qt_resources import ResourceError, read_rcc
    photo = tmp_path / "photo.webp"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(photo)
    (tmp_path / "a.rcc").write_bytes(_rcc({"photo.webp": photo.read_bytes(), "notes.txt": b"x" * 500},
                                          compressed={"notes.txt"}))
    files = read_rcc(tmp_path / "a.rcc")
    assert files == {"res/photo.webp": photo.read_bytes(), "res/notes.txt": b"x" * 500}
    (tmp_path / "bad.rcc").write_bytes(b"RIFF" + bytes(40))
    with pytest.raises(ResourceError, match="not a Qt resource file"):
        read_rcc(tmp_path / "bad.rcc")


def test_photos_inside_a_resource_file_are_copied_out_once(tmp_path, monkeypatch):
    from madf.data import debian
    root = tmp_path / "root"
    (root / "usr/share/game").mkdir(parents=True)
    photo = tmp_path / "cat.webp"
    Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(photo)
    (root / "usr/share/game/pics.rcc").write_bytes(_rcc({"cat.webp": photo.read_bytes()}))
    files = ["usr/share/game/pics.rcc::res/cat.webp", "usr/share/game/pics.rcc::res/missing.webp"]
    monkeypatch.setattr(debian, "PACKAGES", {"game-data": ("CC0", files)})
    monkeypatch.setattr(debian, "_unpacked", lambda package, cache, download: root)
    found = debian.debian_photos(tmp_path / "cache", download=False)
    assert [(s.path.name, s.package, s.license) for s in found] == [("cat.webp", "game-data", "CC0")]
    assert found[0].path == tmp_path / "cache/extracted/game-data/res/cat.webp"
    assert found[0].path.read_bytes() == photo.read_bytes()
    (root / "usr/share/game/pics.rcc").unlink()                  # a second run reads the copy, not the archive
    assert [s.path for s in debian.debian_photos(tmp_path / "cache", download=False)] == [found[0].path]


def test_a_damaged_resource_file_is_skipped_with_the_fix_named(tmp_path, monkeypatch, caplog):
    from madf.data import debian
    from madf.data.qt_resources import ResourceError, read_rcc
    root = tmp_path / "cache/root/game-data"
    (root / "usr/share/game").mkdir(parents=True)
    whole = _rcc({"cat.webp": b"RIFF" + bytes(300)})
    for cut in (30, len(whole) // 2, len(whole) - 10):          # header, tree or payload cut short
        (root / "usr/share/game/pics.rcc").write_bytes(whole[:cut])
        with pytest.raises(ResourceError, match="truncated"):
            read_rcc(root / "usr/share/game/pics.rcc")
    files = ["usr/share/game/pics.rcc::res/cat.webp", "usr/share/game/pics.rcc::res/dog.webp"]
    monkeypatch.setattr(debian, "PACKAGES", {"game-data": ("CC0", files)})
    monkeypatch.setattr(debian, "_unpacked", lambda package, cache, download: root)
    with caplog.at_level("WARNING", logger="madf"):
        assert debian.debian_photos(tmp_path / "cache", download=False) == []
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and "truncated" in warned[0] and f"delete {root} to fetch it again" in warned[0], warned
