"""The data-prep task streams its rows in chunks: its dataset must be exactly the one the task makes
on all rows at once (same rows, order and dtypes), whatever falls on a chunk boundary."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from skitflow.run import runtime
from skitflow.util.datasets import read_dataset


@dataclass
class Artifact:
    path: str
    metadata: dict[str, Any] = field(default_factory=dict)


def spec(source: dict[str, Any], steps: list[tuple[str, dict[str, Any]]], **extra: Any) -> str:
    calls = [{"kind": "source", "step": "csv", "package": "skitflow", "settings": source,
              "at": "source"}]
    calls += [{"kind": "transform", "step": name, "package": "skitflow", "settings": settings,
               "at": f"steps[{i}]"} for i, (name, settings) in enumerate(steps)]
    return json.dumps({"task": "prepare", "recipe": "t", "calls": calls, **extra})


def prepare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
            task: str, rows: int, name: str) -> tuple[Any, Artifact, runtime.Outputs, str]:
    monkeypatch.setenv(runtime.STREAM_ROWS_ENV, str(rows))
    out = Artifact(str(tmp_path / name))
    outputs = runtime.prepare(out, task, {})
    log = capsys.readouterr().out
    return read_dataset(out.path), out, outputs, log


def both(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
         task: str, rows: int = 3) -> tuple[Any, Artifact, runtime.Outputs, str]:
    """The task streamed in chunks of `rows` and on all rows at once: the same dataset."""
    import pandas as pd

    whole, whole_out, whole_outputs, whole_log = prepare(tmp_path, monkeypatch, capsys, task, 0, "whole")
    assert "streamed" not in whole_log
    chunked, out, outputs, log = prepare(tmp_path, monkeypatch, capsys, task, rows, "chunked")
    pd.testing.assert_frame_equal(chunked, whole, check_dtype=True, check_exact=True)
    assert outputs == whole_outputs
    assert out.metadata["rows"] == whole_out.metadata["rows"] == len(whole)
    assert out.metadata["columns"] == whole_out.metadata["columns"]
    assert [(s["step"], s["rows_in"], s["rows_out"]) for s in out.metadata["steps"]] == \
        [(s["step"], s["rows_in"], s["rows_out"]) for s in whole_out.metadata["steps"]]
    return chunked, out, outputs, log


CLEANING = [
    ("drop_duplicates", {"subset": ["id"]}),
    ("dropna", {"columns": ["text"]}),
    ("filter_rows", {"expr": "n >= 1"}),
    ("strip", {"columns": ["text"]}),
    ("lowercase", {"columns": ["text"]}),
]


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "data.csv"
    path.write_text(text)
    return str(path)


def test_duplicates_across_chunks_nulls_and_emptied_chunks_stream_to_the_same_rows(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    data = write(tmp_path, "id,text,n\n"
                 "1, A ,1\n2,B,1\n1,dup of 1,1\n"      # chunk 1: a duplicate inside it
                 "3,,1\n2,dup of 2,1\n4,c,0\n"          # chunk 2: a null, a duplicate of chunk 1
                 "5,x,0\n6,y,0\n7,z,0\n"                # chunk 3: every row filtered out
                 "3,  Dup of null-text 3 ,2\n8,D ,5\n1,again,1\n")
    task = spec({"path": data, "columns": ["id", "text", "n"]}, CLEANING)
    frame, _, outputs, log = both(tmp_path, monkeypatch, capsys, task)
    assert "streamed 12 rows in chunks of 3" in log
    # dedupe runs first: the later 3 is a duplicate of the 3 that dropna then removes
    assert frame["id"].tolist() == [1, 2, 8] and outputs.rows == 3
    assert frame["text"].tolist() == ["a", "b", "d"]


@pytest.mark.parametrize("subset", [["key"], ["key", "n"], None])
def test_text_and_multi_column_keys_with_nulls_dedupe_as_pandas(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        subset: list[str] | None) -> None:
    # every chunk of 2 has a value in each column, so both read as text in every chunk
    data = write(tmp_path, "key,n\na,p\n,p\nb,q\na,p\n,p\na,\nb,q\n,q\nc,\n,r\nc,\na,p\n")
    settings = {"subset": subset} if subset else {}
    task = spec({"path": data}, [("drop_duplicates", settings)])
    _, _, _, log = both(tmp_path, monkeypatch, capsys, task, rows=2)
    assert "streamed 12 rows" in log


def keys(kind: str) -> Any:
    import numpy as np
    import pandas as pd

    numbers = np.random.default_rng(7).integers(-50, 50, 2000)
    if kind == "int":
        return numbers
    text = pd.Series([f"k{n}" + "x" * (n % 7) for n in numbers], dtype="str")
    text[numbers % 11 == 0] = None  # nulls are one key
    if kind == "non-ascii later":  # the bytes keys move to the set half-way
        text[1500:] = text[1500:].str.replace("k1", "kü")
    if kind == "nul":
        text[::3] = text[::3] + "\x00"
    return text


@pytest.mark.parametrize("kind", ["int", "text", "non-ascii later", "nul"])
def test_the_seen_keys_give_pandas_first_rows(kind: str) -> None:
    import numpy as np
    import pandas as pd

    from skitflow.steps.transforms import DropDuplicates

    step = DropDuplicates()
    values = keys(kind)
    frame = pd.DataFrame({"k": values, "i": np.arange(len(values))})
    expected = frame.drop_duplicates(subset=["k"], keep="first")["i"].tolist()
    for size in (1, 7, 64, 999, 5000):
        stream = step.streamer(step.Settings(subset=["k"]))
        assert stream is not None
        kept = [stream(frame.iloc[at:at + size])["i"] for at in range(0, len(frame), size)]
        assert pd.concat(kept).tolist() == expected, size


def test_a_column_whose_type_changes_between_chunks_falls_back_to_all_rows(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    data = write(tmp_path, "id,text,n\n1,a,1\n2,b,1\n3,c,1\n4,d,1.5\n5,e,2\n")  # n: int, then float
    task = spec({"path": data}, CLEANING)
    frame, _, _, log = both(tmp_path, monkeypatch, capsys, task)
    assert "streaming stopped" in log and "streamed" not in log.replace("streaming stopped", "")
    assert str(frame["n"].dtype) == "float64"


def test_a_mixed_text_and_number_column_falls_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    data = write(tmp_path, "id,text,n\n1,a,1\n2,b,1\n3,c,x\n4,d,1\n")
    task = spec({"path": data}, [("drop_duplicates", {"subset": ["id"]})])
    _, _, _, log = both(tmp_path, monkeypatch, capsys, task, rows=2)
    assert "streaming stopped" in log


def test_an_int_hint_with_nulls_in_one_chunk_only_falls_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    data = write(tmp_path, "id,n\n1,1\n2,2\n3,\n4,4\n")  # int64 first, then nullable Int64
    task = spec({"path": data, "dtype": {"n": "int"}}, [("dropna", {"columns": ["id"]})])
    frame, _, _, log = both(tmp_path, monkeypatch, capsys, task, rows=2)
    assert "streaming stopped" in log and str(frame["n"].dtype) == "Int64"


def test_every_row_filtered_out_gives_rows_zero(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    data = write(tmp_path, "id,text,n\n1,a,0\n2,b,0\n3,c,0\n4,d,0\n")
    task = spec({"path": data}, CLEANING)
    frame, out, outputs, log = both(tmp_path, monkeypatch, capsys, task)
    assert "streamed 4 rows" in log
    assert outputs.rows == 0 and len(frame) == 0 and out.metadata["columns"] == ["id", "text", "n"]


def test_an_empty_source_keeps_the_on_empty_rules(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    data = write(tmp_path, "id,text,n\n")
    task = spec({"path": data}, CLEANING, on_empty="skip")
    _, _, outputs, log = both(tmp_path, monkeypatch, capsys, task)
    assert outputs.rows == 0 and runtime.NO_ROWS in log
    monkeypatch.setenv(runtime.STREAM_ROWS_ENV, "3")
    with pytest.raises(Exception, match="returned no rows"):
        runtime.prepare(Artifact(str(tmp_path / "failing")), spec({"path": data}, CLEANING), {})


def test_limit_and_csv_output_stream_as_well(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    data = write(tmp_path, "id,text,n\n" + "".join(f"{i % 4},t{i},{i * 0.5}\n" for i in range(20)))
    task = spec({"path": data, "limit": 9}, [("drop_duplicates", {"subset": ["id"]})], format="csv")
    _, _, outputs, log = both(tmp_path, monkeypatch, capsys, task, rows=2)
    assert "streamed 9 rows" in log and outputs.rows == 4
    assert (tmp_path / "chunked").read_bytes() == (tmp_path / "whole").read_bytes()


@pytest.mark.parametrize("step", [("drop_duplicates", {"subset": ["id"], "keep": "last"}),
                                  ("sample", {"n": 2, "seed": 1}),
                                  ("cast", {"mapping": {"text": "category"}})])
def test_steps_that_need_all_rows_run_on_all_rows(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        step: tuple[str, dict[str, Any]]) -> None:
    data = write(tmp_path, "id,text,n\n1,a,1\n2,b,1\n1,c,1\n3,d,1\n2,e,1\n")
    _, _, _, log = both(tmp_path, monkeypatch, capsys, spec({"path": data}, [step]), rows=2)
    assert "streamed" not in log and "streaming stopped" not in log


def test_a_step_without_the_streamable_flag_gets_the_whole_frame() -> None:
    import pandas as pd

    from skitflow.steps.base import StepSettings, TransformStep

    class Plugin(TransformStep):
        name = "plugin"

        def run(self, frame: pd.DataFrame, settings: StepSettings) -> pd.DataFrame:
            return frame

    assert Plugin().streamer(StepSettings()) is None


def test_each_step_is_timed_by_its_own_work_while_the_source_reads_ahead(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The source makes its chunks on another thread while the transforms work: its seconds in
    the step history are the time it spent making them, not the (shorter) wait for them."""
    import time

    from skitflow.steps.sources import CsvSource
    from skitflow.steps.transforms import Lowercase

    source_pause, step_pause, chunks = 0.05, 0.1, 4
    read_chunks, streamer = CsvSource._batches, Lowercase.streamer

    def slow_chunks(self: Any, *args: Any) -> Any:
        for frame in read_chunks(self, *args):
            time.sleep(source_pause)
            yield frame

    def slow_streamer(self: Any, settings: Any) -> Any:
        step = streamer(self, settings)

        def slow(frame: Any) -> Any:
            time.sleep(step_pause)
            return step(frame)

        return slow

    monkeypatch.setattr(CsvSource, "_batches", slow_chunks)
    monkeypatch.setattr(Lowercase, "streamer", slow_streamer)
    data = write(tmp_path, "id,text\n" + "".join(f"{i},T{i}\n" for i in range(2 * chunks)))
    task = spec({"path": data}, [("lowercase", {"columns": ["text"]})])
    _, out, _, log = prepare(tmp_path, monkeypatch, capsys, task, 2, "chunked")
    assert f"streamed {2 * chunks} rows" in log
    seconds = {entry["step"]: entry["seconds"] for entry in out.metadata["steps"]}
    assert seconds["csv"] >= chunks * source_pause
    assert seconds["lowercase"] >= chunks * step_pause
