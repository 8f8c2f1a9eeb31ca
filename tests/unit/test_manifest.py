"""Manifests: valid ones parse with ids and labels; each kind of bad input names the file and row."""

import pytest

from orthograd_cli.data.manifest import check_disjoint, read_manifest
from orthograd_cli.errors import ManifestError
from orthograd_cli.models.registry import ModelInfo

TWO_CLASSES = ModelInfo(arch="resnet18", num_classes=2, labels=["dog", "cat"])


@pytest.fixture
def image(tmp_path):
    from PIL import Image

    Image.new("L", (8, 8)).save(tmp_path / "a.png")
    Image.new("L", (8, 8)).save(tmp_path / "b.png")
    return tmp_path


def write(folder, text):
    path = folder / "m.csv"
    path.write_text(text)
    return path


def test_labels_may_be_indices_or_class_names(image):
    manifest = read_manifest(write(image, "path,label\na.png,cat\nb.png,1\n"), "classification", TWO_CLASSES)
    assert [s.target for s in manifest.samples] == [1, 1]
    assert manifest.samples[0].id == "a.png" and manifest.samples[0].path == image / "a.png"
    assert len(manifest.sha256) == 64


@pytest.mark.parametrize("text,fragment", [
    ("", "empty manifest"),
    ("path,label\n", "header only"),
    ("path\na.png\n", "missing column 'label'"),
    ("path,label,lable2\na.png,0,1\n", "unexpected column"),
    ("path,label\nmissing.png,0\n", "row 2: file not found"),
    ("path,label\na.png,5\n", "row 2: label 5 is out of range"),
    ("path,label\na.png,kat\n", "unknown class name 'kat'"),
    ("id,path,label\nx,a.png,0\nx,b.png,1\n", "row 3: duplicate id 'x'"),
])
def test_bad_manifests_name_file_and_row(image, text, fragment):
    with pytest.raises(ManifestError) as caught:
        read_manifest(write(image, text), "classification", TWO_CLASSES)
    assert fragment in str(caught.value) and "m.csv" in str(caught.value)


def test_a_sample_in_both_forget_and_retain_is_refused(image):
    (image / "f").mkdir()
    forget = read_manifest(write(image, "id,path,label\ns1,a.png,0\n"), "classification", TWO_CLASSES)
    (image / "r.csv").write_text("id,path,label\ns1,a.png,0\ns2,b.png,1\n")
    retain = read_manifest(image / "r.csv", "classification", TWO_CLASSES)
    with pytest.raises(ManifestError, match="s1"):
        check_disjoint(forget, retain)


def test_manifest_hash_is_the_sha256_of_the_file_bytes(image):
    import hashlib

    path = write(image, "path,label\na.png,0\nb.png,1\n")
    assert read_manifest(path, "classification", TWO_CLASSES).sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_row_that_is_not_utf8_is_named(image):
    path = image / "m.csv"
    path.write_bytes(b"path,label\na.png,0\n\xff\xfe.png,1\n")
    with pytest.raises(ManifestError, match="m.csv row 3: not UTF-8"):
        read_manifest(path, "classification", TWO_CLASSES)


def test_a_manifest_with_carriage_return_line_ends_reads_like_one_with_newlines(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "b.png").write_bytes(b"x")
    (tmp_path / "lf.csv").write_text("id,path,label\na,a.png,1\nb,b.png,2\n")
    (tmp_path / "cr.csv").write_bytes(b"id,path,label\ra,a.png,1\rb,b.png,2\r")
    lf, cr = read_manifest(tmp_path / "lf.csv", check_files=True), read_manifest(tmp_path / "cr.csv")
    def rows(manifest):
        return [(s.id, s.path, s.target, s.row) for s in manifest.samples]

    assert rows(cr) == rows(lf)


@pytest.mark.parametrize("kind", ["folder", "fifo", "device"])
def test_a_manifest_naming_something_that_is_not_a_file_says_so(tmp_path, kind):
    import os

    target = {"folder": tmp_path / "folder.png", "fifo": tmp_path / "fifo.png", "device": "/dev/zero"}[kind]
    if kind == "folder":
        target.mkdir()
    elif kind == "fifo":
        os.mkfifo(target)
    (tmp_path / "m.csv").write_text(f"id,path,label\na,{target},1\n")
    with pytest.raises(ManifestError, match="is not a regular file"):
        read_manifest(tmp_path / "m.csv")


def test_the_data_hash_follows_the_listed_files_not_just_the_csv(image):
    import hashlib

    from PIL import Image

    from orthograd_cli.data.manifest import content_sha256

    path = write(image, "path,label\na.png,cat\nb.png,dog\n")
    before = read_manifest(path, "classification", TWO_CLASSES)
    # independently: sha256 over the files' sha256 in manifest order
    expected = hashlib.sha256(b"".join(hashlib.sha256((image / name).read_bytes()).hexdigest().encode() + b"\n"
                                       for name in ("a.png", "b.png"))).hexdigest()
    assert content_sha256(before) == expected
    Image.new("L", (8, 8), color=255).save(image / "b.png")  # another image under the same CSV
    after = read_manifest(path, "classification", TWO_CLASSES)
    assert after.sha256 == before.sha256 and content_sha256(after) != expected
    swapped = read_manifest(write(image, "path,label\nb.png,dog\na.png,cat\n"), "classification", TWO_CLASSES)
    assert content_sha256(swapped) != content_sha256(after)  # order is part of it
