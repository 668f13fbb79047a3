"""Points are addressable and unique: a point is named by index, full name or hash prefix, and a
point added to a sweep later (by an override, an edited sweep file) gets a free index and name."""

from __future__ import annotations

import pytest
import yaml

from helpers import ROOT
from workflow.errors import ManifestError
from workflow.launch import lifecycle
from workflow.launch.driver import placed
from workflow.launch.manifest import Manifest, PointRecord, place
from workflow.launch.sweep import expand, single


def manifest_of(*rows: tuple[int, str, str]) -> Manifest:
    manifest = Manifest("names", "names.yaml")
    for index, name, digest in rows:
        manifest.points[digest] = PointRecord(index, name, digest, f"/runs/{name}")
    return manifest


BS = manifest_of((0, "train_batch_size=8", "aaaa1111" * 2), (1, "train_batch_size=32", "bbbb2222" * 2))


def test_a_point_is_named_by_index_full_name_or_hash_prefix():
    assert lifecycle.resolve_point(BS, 1).name == "train_batch_size=32"
    assert lifecycle.resolve_point(BS, "1").name == "train_batch_size=32"
    assert lifecycle.resolve_point(BS, "train_batch_size=8").index == 0
    assert lifecycle.resolve_point(BS, "bbbb").index == 1
    assert [r.index for r in lifecycle.find_points(BS, None)] == [0, 1]


def test_an_unknown_point_suggests_a_name():
    with pytest.raises(ManifestError, match="No point 'train_batch_size=31'") as info:
        lifecycle.resolve_point(BS, "train_batch_size=31")
    assert "train_batch_size=3" in info.value.problems[0].hint


def test_an_old_manifest_with_duplicate_names_is_ambiguous_by_name():
    old = manifest_of((0, "train_batch_size=8", "aaaa1111" * 2), (0, "train_batch_size=8", "cccc3333" * 2))
    for given in ("train_batch_size=8", "0"):
        with pytest.raises(ManifestError, match="ambiguous") as info:
            lifecycle.single_point(old, given)
        hint = info.value.problems[0].hint
        assert "0 aaaa1111" in hint and "0 cccc3333" in hint
    assert lifecycle.single_point(old, "cccc3333").hash == "cccc3333" * 2


def test_a_short_hash_prefix_of_two_points_is_ambiguous():
    two = manifest_of((0, "a=1", "abcd0000" * 2), (1, "a=2", "abce0000" * 2))
    with pytest.raises(ManifestError, match="ambiguous"):
        lifecycle.resolve_point(two, "abc")
    assert lifecycle.resolve_point(two, "abce").name == "a=2"


def test_index_comes_before_a_hash_prefix_of_digits():
    digits = manifest_of((0, "a=1", "1234abcd" * 2), (1, "a=2", "0000abcd" * 2))
    assert lifecycle.resolve_point(digits, "1").name == "a=2"
    assert lifecycle.resolve_point(digits, "12").name == "a=1"


def test_place_keeps_recorded_points_and_gives_new_ones_free_indices_and_names():
    spots = place([(0, "train_batch_size=8", "new1"), (1, "train_batch_size=32", "bbbb2222" * 2),
                   (2, "train_batch_size=64", "new2")], BS, ("train.seed=5",))
    assert spots == {"new1": (2, "train_batch_size=8,train.seed=5"),
                     "bbbb2222" * 2: (1, "train_batch_size=32"),
                     "new2": (3, "train_batch_size=64")}


def test_place_without_overrides_or_with_a_taken_name_adds_the_hash():
    assert place([(0, "train_batch_size=8", "dddd4444")], BS)["dddd4444"] == (2, "train_batch_size=8@dddd4444")
    taken = manifest_of((0, "default", "aaaa"), (1, "x=1", "bbbb"))
    assert place([(0, "default", "eeee")], taken, ("x=1",))["eeee"] == (2, "x=1@eeee")
    assert place([(0, "default", "ffff")], taken, ("y=2",))["ffff"] == (2, "y=2")
    assert place([(0, "p", "1"), (1, "p", "2")], None) == {"1": (0, "p"), "2": (1, "p@2")}


def write_sweep(tmp_path, values) -> str:
    path = tmp_path / "bs.yaml"
    path.write_text(yaml.safe_dump({"base": str(ROOT / "jobs/demo.yaml"), "name": "bs",
                                    "grid": {"train.seed": values}}))
    return str(path)


def record(sweep) -> None:
    manifest = Manifest(sweep.name, sweep.file)
    for p in sweep.points:
        manifest.points[p.hash] = PointRecord(p.index, p.name, p.hash, f"/runs/{p.slug}")
    manifest.save()


def test_a_cli_override_adds_points_with_new_indices_and_names(isolated):
    path = write_sweep(isolated, [1, 2])
    record(placed(expand(path)))
    more = placed(expand(path, ["train.max_steps=7"]))
    assert [(p.index, p.name) for p in more.points] == [(2, "seed=1,train.max_steps=7"),
                                                       (3, "seed=2,train.max_steps=7")]
    assert more.points[0].spec.run_name == "seed=1,train.max_steps=7"
    assert [(p.index, p.name) for p in placed(expand(path)).points] == [(0, "seed=1"), (1, "seed=2")]


def test_an_edited_sweep_file_keeps_recorded_points(isolated):
    path = write_sweep(isolated, [1, 2])
    record(placed(expand(path)))
    path = write_sweep(isolated, [2, 3])
    assert [(p.index, p.name) for p in placed(expand(path)).points] == [(1, "seed=2"), (2, "seed=3")]


def test_a_run_beside_an_existing_point_gets_the_next_index(isolated):
    spec = str(ROOT / "jobs/demo.yaml")
    record(placed(single(spec)))
    again = placed(single(spec, ["train.max_steps=7"]))
    assert [(p.index, p.name) for p in again.points] == [(1, "demo[train.max_steps=7]")]


def test_predict_takes_a_full_point_name_for_the_point(isolated):
    manifest = manifest_of((0, "num_beams=4", "aaaa"), (1, "generate.num_beams=2", "bbbb"))
    manifest.save()
    assert lifecycle.point_or_override("names", "num_beams=4", ("x=1",)) == ("num_beams=4", ("x=1",))
    assert lifecycle.point_or_override("names", "generate.n_samples=3", ()) == (None, ("generate.n_samples=3",))
    assert lifecycle.point_or_override("names", 0, ()) == (0, ())
    assert lifecycle.point_or_override(None, "a=1", ()) == (None, ("a=1",))
    with pytest.raises(ManifestError, match="both a point of sweep names and a setting") as info:
        lifecycle.point_or_override("names", "generate.num_beams=2", ())
    assert "1 bbbb" in info.value.problems[0].hint
