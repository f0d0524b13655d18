"""generate writes names as they are made: the same seeded names as the whole-list API, in
bounded memory, and a reader that stops early (``| head``) ends the run at once."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from nametool.runtime import NameModel
from nametool.runtime.cli import main as run_main

RUN = "import sys; from nametool.runtime.cli import main; main(sys.argv[1:])"


@pytest.mark.parametrize("options, args", [
    ({}, []),
    ({"temperature": 0.8, "top_p": 0.9, "min_p": 0.05}, ["--temperature", "0.8", "--top-p", "0.9", "--min-p", "0.05"]),
    ({"unique": True}, ["--unique"]),
    ({"unique": True, "novel": True, "prefix": "sa"}, ["--unique", "--novel", "--prefix", "sa"]),
])
def test_streamed_names_are_the_whole_lists_names_across_chunks(options, args):
    """Chunks of 7 names: many chunk boundaries, and unique/novel drop names inside chunks."""
    expected = NameModel.load("lecture").generate(100, seed=9, batch_size=7, **options)
    result = CliRunner().invoke(run_main, ["generate", "--model", "lecture", "-n", "100", "--seed", "9",
                                           "--batch-size", "7", *args])
    assert result.exit_code == 0, result.output
    assert result.output.split("\n")[:-1] == expected


def test_every_format_streams_the_same_names_and_json_stays_one_array():
    runner = CliRunner()
    base = ["generate", "--model", "lecture", "-n", "20", "--seed", "3", "--batch-size", "6"]
    names = runner.invoke(run_main, base).output.split()
    as_json = json.loads(runner.invoke(run_main, [*base, "--format", "json"]).output)
    lines = runner.invoke(run_main, [*base, "--format", "jsonl"]).output.splitlines()
    rows = runner.invoke(run_main, [*base, "--format", "csv"]).output.splitlines()
    assert [r["name"] for r in as_json] == names == [json.loads(line)["name"] for line in lines]
    assert rows[0] == "name,logprob" and [r.split(",")[0] for r in rows[1:]] == names
    assert all(r["logprob"] < 0 for r in as_json)
    assert runner.invoke(run_main, ["generate", "-n", "0", "--format", "json"]).output == "[]\n"
    assert runner.invoke(run_main, ["generate", "-n", "0", "--format", "csv"]).output == "name,logprob\n"


def test_a_reader_that_stops_after_three_lines_ends_a_trillion_name_run():
    proc = subprocess.Popen([sys.executable, "-c", RUN, "generate", "-n", "1000000000000", "--seed", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = [proc.stdout.readline() for _ in range(3)]
    proc.stdout.close()  # what `head -3` does
    code = proc.wait(timeout=120)  # a guard against a hang, not a timing
    assert all(line.strip() for line in first)
    assert code == 0 and proc.stderr.read() == b""
