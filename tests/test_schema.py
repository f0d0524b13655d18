"""The one schema: JSON round trips and what a reader refuses."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nametool.runtime.errors import ModelFileError
from nametool.runtime.known import KnownNames
from nametool.runtime.schema import SCHEMA_VERSION, ModelConfig, ModelMeta

from .conftest import make_meta


@given(st.sets(st.characters(blacklist_categories=("Cs",), blacklist_characters="."), min_size=1, max_size=60))
def test_round_trip_any_vocabulary(chars):
    meta = make_meta(chars=tuple(sorted(chars)))
    assert ModelMeta.from_json(meta.to_json()) == meta


@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"),
                        min_size=1, max_size=15), max_size=40))
def test_known_names_round_trip_exactly(names):
    meta = make_meta(known=names)
    again = ModelMeta.from_json(meta.to_json())
    assert again.known_names.names == frozenset(names)
    assert again.known_names.count == len(set(names))


def test_known_names_corruption_is_a_model_file_error():
    known = KnownNames(count=2, data="not base64!")
    with pytest.raises(ModelFileError, match="known_names is corrupt"):
        "x" in known


def test_json_keeps_non_ascii_readable():
    meta = make_meta(chars=("अ", "é"))
    assert "अ" in meta.to_json()


def test_unknown_schema_version_is_refused_naming_both_versions():
    payload = json.loads(make_meta().to_json())
    payload["schema_version"] = 99
    with pytest.raises(ModelFileError, match=f"version 99 is not one this nametool reads \\({SCHEMA_VERSION}\\)"):
        ModelMeta.from_json(json.dumps(payload))


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda p: p.pop("vocab"), "missing the 'vocab' section"),
        (lambda p: p["model"].pop("context_size"), "'model' is missing context_size"),
        (lambda p: p["model"].update(hidden=[]), "model.hidden"),
        (lambda p: p["model"].update(context_size=0), "model.context_size"),
        (lambda p: p["vocab"].update(chars=["a", "a"]), "characters repeat"),
        (lambda p: p["vocab"].update(chars=["a", "."]), "end token '.' is also a name character"),
        (lambda p: p["sampling"].update(min_len=10), "min_len <= max_len"),
        (lambda p: p["model"].update(members=0), "model.members 0 must be an integer from 1 to 16"),
        (lambda p: p["model"].update(members=17), "model.members 17 must be"),
        (lambda p: p["model"].update(members="2"), "model.members"),
    ],
)
def test_broken_fields_are_refused(mutate, message):
    payload = json.loads(make_meta().to_json())
    mutate(payload)
    with pytest.raises(ModelFileError, match=message):
        ModelMeta.from_json(json.dumps(payload))


@pytest.mark.parametrize("text", ["", "not json", "[1, 2]"])
def test_non_object_metadata_is_refused(text):
    with pytest.raises(ModelFileError, match="metadata"):
        ModelMeta.from_json(text)


def test_known_names_that_expand_without_bound_are_refused():
    import base64
    import zlib

    bomb = base64.b64encode(zlib.compress(b"0 a" + b"a" * 5_000_000, 9)).decode("ascii")
    with pytest.raises(ModelFileError, match="expands beyond"):
        "x" in KnownNames(count=1, data=bomb)


def test_members_default_to_one_for_files_written_before_the_field():
    payload = json.loads(make_meta().to_json())
    del payload["model"]["members"]
    assert ModelMeta.from_json(json.dumps(payload)).model.members == 1


def test_each_member_counts_in_the_parameters():
    one = ModelConfig(context_size=10, embed_dim=32, hidden=(512,))
    assert one.parameter_count(27) == 179_067  # docs/sweep.md's single-MLP rows
    assert replace(one, members=2).parameter_count(27) == 2 * 179_067
